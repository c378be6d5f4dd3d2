"""Fused optimizer updates over whole lists of tensors (one native call per step)."""

from __future__ import annotations

import numbers

from .. import _C
from ..ops import checks
from ..tensor import Tensor


def _arrays(op: str, argument: str, tensors) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: argument '{argument}' expected a list of attnkit.Tensor, got {type(tensors).__name__}")
    arrays = []
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: argument '{argument}[{i}]' expected an attnkit.Tensor, got {type(t).__name__}")
        arrays.append(t._array)
    return arrays


def adamw_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay_mask=None,
) -> None:
    """One AdamW step over every parameter, in place on ``params``,
    ``exp_avgs`` and ``exp_avg_sqs``, in a single native call.

    The update is torch.optim.AdamW's (Loshchilov & Hutter, "Decoupled weight
    decay regularization", 2019), with t = ``step`` (1 for the first step):

        p = p * (1 - lr * weight_decay)          (decoupled weight decay)
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    All tensors float32, the four of each parameter of one shape; the
    updated ones may not share memory. ``decay_mask``: None (decay every
    parameter) or one bool per parameter, False for those that take no
    weight decay (biases and norm weights, usually). Computed in float32,
    as PyTorch does.
    """
    op = "adamw_"
    params = _arrays(op, "params", params)
    grads = _arrays(op, "grads", grads)
    exp_avgs = _arrays(op, "exp_avgs", exp_avgs)
    exp_avg_sqs = _arrays(op, "exp_avg_sqs", exp_avg_sqs)
    if decay_mask is None:
        decay_mask = []
    else:
        if not isinstance(decay_mask, (list, tuple)):
            raise TypeError(
                f"{op}: argument 'decay_mask' expected None or a list of bools, got {type(decay_mask).__name__}"
            )
        for i, flag in enumerate(decay_mask):
            if not isinstance(flag, bool):
                raise TypeError(f"{op}: argument 'decay_mask[{i}]' expected a bool, got {type(flag).__name__}")
        decay_mask = list(decay_mask)
    if not isinstance(step, numbers.Integral) or isinstance(step, bool):
        raise TypeError(f"{op}: argument 'step' expected an int, got {type(step).__name__}")
    if not 1 <= step < 2**63:
        raise ValueError(f"{op}: argument 'step' expected a step number >= 1, got {step}")
    _C.adamw_step(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        decay_mask,
        int(step),
        checks.real(op, "lr", lr, finite=False),
        checks.real(op, "beta1", beta1, finite=False),
        checks.real(op, "beta2", beta2, finite=False),
        checks.real(op, "eps", eps, finite=False),
        checks.real(op, "weight_decay", weight_decay, finite=False),
    )


__all__ = ["adamw_"]
