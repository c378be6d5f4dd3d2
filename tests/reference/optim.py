"""float64 references: AdamW, SGD and the global gradient norm."""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------- optim ---


def adamw(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """torch.optim.AdamW's update (its single-tensor path, step by step) in
    float64; returns the new (param, exp_avg, exp_avg_sq)."""
    p, g, m, v = (np.asarray(a, np.float64) for a in (param, grad, exp_avg, exp_avg_sq))
    if decay:
        p = p * (1 - lr * weight_decay)  # param.mul_(1 - lr * weight_decay)
    m = m + (1 - beta1) * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
    v = v * beta2 + (1 - beta2) * g * g  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + eps
    p = p - step_size * m / denom  # param.addcdiv_(exp_avg, denom, value=-step_size)
    return p, m, v


def adamw_term_magnitudes(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """The size of the terms each output of the update is a sum or difference
    of: |m| + (1 - beta1) (|g| + |m|) for the new m, the new v itself (a sum
    of non-negative terms), and |p * decay| + step_size * (m's terms) / denom
    for the new p."""
    p, g, m, v = (np.abs(np.asarray(a, np.float64)) for a in (param, grad, exp_avg, exp_avg_sq))
    decay_factor = abs(1 - lr * weight_decay) if decay else 1.0
    m_terms = m + (1 - beta1) * (g + m)
    v_new = v * beta2 + (1 - beta2) * g * g
    denom = np.sqrt(v_new) / math.sqrt(1 - beta2**step) + eps
    p_terms = p * decay_factor + lr / (1 - beta1**step) * m_terms / denom
    return p_terms, m_terms, v_new


def global_norm(arrays):
    """sqrt of the sum of squares of every element of every array."""
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


# ------------------------------------------------------------- optim: SGD ---


def sgd(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov):
    """torch.optim.SGD's update (its single-tensor path) in float64;
    ``momentum_buffer`` is None before the first step. Returns the new
    (param, momentum_buffer); the buffer stays None without momentum."""
    p, g = np.asarray(param, np.float64), np.asarray(grad, np.float64)
    d = g + weight_decay * p if weight_decay != 0 else g  # d_p = grad.add(param, alpha=weight_decay)
    buffer = None
    if momentum != 0:
        if momentum_buffer is None:
            buffer = d.copy()  # buf = torch.clone(d_p)
        else:  # buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            buffer = np.asarray(momentum_buffer, np.float64) * momentum + (1 - dampening) * d
        d = d + momentum * buffer if nesterov else buffer
    return p - lr * d, buffer  # param.add_(d_p, alpha=-lr)


def sgd_term_magnitudes(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov):
    """The size of the terms the new param and buffer are sums of (each
    quantity of sgd() with every term replaced by its absolute value)."""
    p, g = np.abs(np.asarray(param, np.float64)), np.abs(np.asarray(grad, np.float64))
    d = g + abs(weight_decay) * p
    buffer = None
    if momentum != 0:
        buffer = d if momentum_buffer is None else np.abs(momentum_buffer) * momentum + abs(1 - dampening) * d
        d = d + momentum * buffer if nesterov else buffer
    return p + lr * d, buffer
