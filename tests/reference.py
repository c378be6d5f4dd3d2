"""float64 numpy references for the kernels. Each function takes and returns
float64 arrays and says which formula it evaluates."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    return _erfc(np.asarray(x, np.float64)).astype(np.float64)


# ---- gemm ---------------------------------------------------------------


def matmul(a, b):
    """float64 product of float64 copies of the operands."""
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def matmul_naive_float32(a, b):
    """The same product summed plainly in float32: one k at a time, a rounded
    multiply and a rounded add (no FMA, no blocking). The yardstick for the
    accuracy of a reordered float32 GEMM."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    out = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), np.float32)
    for p in range(a.shape[-1]):
        out += a[..., :, p:p + 1] * b[..., p:p + 1, :]
    return out


def gelu(x, approximate="none"):
    """float64 GELU: x * Phi(x) through erfc, or the tanh form as x * sigmoid(2u)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            u = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
            return x / (1 + np.exp(-2 * u))
        return 0.5 * x * erfc(-x / np.sqrt(2))


def linear_backward(x, weight, grad_out):
    """Gradients of y = x @ weight.T + bias: (dx, dweight, dbias), float64."""
    x = np.asarray(x, np.float64).reshape(-1, weight.shape[1])
    g = np.asarray(grad_out, np.float64).reshape(-1, weight.shape[0])
    w = np.asarray(weight, np.float64)
    return g @ w, g.T @ x, g.sum(axis=0)


# ---- attention ----------------------------------------------------------


def attention_visibility(batch, tq, tk, causal=False, window=None, key_lengths=None, key_padding_mask=None):
    """bool [B, 1, Tq, Tk]: which key each query may see (query i at position i + Tk - Tq)."""
    position = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    visible = np.ones((batch, 1, tq, tk), bool)
    if causal:
        visible = visible & (j <= position)
    if window is not None:
        visible = visible & (np.abs(position - j) < window)
    if key_lengths is not None:
        visible = visible & (j[None, None] < np.asarray(key_lengths)[:, None, None, None])
    if key_padding_mask is not None:
        visible = visible & ~np.asarray(key_padding_mask)[:, None, None, :]
    return visible


def attention_probabilities(q, k, visible, scale=None):
    """float64 softmax(scale q k^T) over visible keys, [B, H, Tq, Tk]; rows with
    no visible key are all zero. k has kv_heads heads, repeated per group."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    group = q.shape[2] // k.shape[2]
    k = np.repeat(k, group, axis=2)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(visible, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(visible, np.exp(s - row_max), 0.0)
    total = p.sum(axis=-1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 0.0)


def attention(q, k, v, scale=None, **mask):
    """float64 attention output [B, Tq, H, D]; masked keys never touch the result."""
    q = np.asarray(q, np.float64)
    v = np.where(np.isfinite(v), v, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else v
    visible = attention_visibility(q.shape[0], q.shape[1], np.shape(k)[1], **mask)
    k = np.where(np.isfinite(k), k, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else k
    p = attention_probabilities(q, k, visible, scale)
    group = q.shape[2] // np.shape(v)[2]
    return np.einsum("bhij,bjhd->bihd", p, np.repeat(np.asarray(v, np.float64), group, axis=2))


def attention_backward(q, k, v, grad_out, scale=None, **mask):
    """float64 (dq, dk, dv) of attention, from the softmax Jacobian:
    dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
    dK = scale dS^T Q; with grouped K/V the gradients of a group are summed."""
    q, k, v, g = (np.asarray(x, np.float64) for x in (q, k, v, grad_out))
    batch, tq, heads, d = q.shape
    tk, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    scale = 1 / np.sqrt(d) if scale is None else scale
    visible = attention_visibility(batch, tq, tk, **mask)
    p = attention_probabilities(q, k, visible, scale)
    k_full = np.repeat(k, group, axis=2)
    v_full = np.repeat(v, group, axis=2)
    dv_full = np.einsum("bhij,bihd->bjhd", p, g)
    dp = np.einsum("bihd,bjhd->bhij", g, v_full)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * np.einsum("bhij,bjhd->bihd", ds, k_full)
    dk_full = scale * np.einsum("bhij,bihd->bjhd", ds, q)
    fold = lambda x: x.reshape(batch, tk, kv_heads, group, d).sum(axis=3)
    return dq, fold(dk_full), fold(dv_full)
