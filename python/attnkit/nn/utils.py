"""Training utilities: gradient-norm clipping."""

from __future__ import annotations

import math
import numbers

from .. import _C
from .._tensor_data import native_array
from ..tensor import Tensor


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scales the gradients of ``parameters`` (a tensor or an iterable of
    them; those without ``.grad`` are skipped) in place so that their global
    L2 norm is at most ``max_norm``, as torch.nn.utils.clip_grad_norm_ does:
    with ``total`` the norm of all gradients taken together, every gradient
    is multiplied by ``max_norm / (total + 1e-6)`` when that is below 1.

    Returns ``total`` (a float), the norm before clipping. The sum of squares
    is accumulated in double in a fixed order, so ``total`` is the same for
    any thread count. A NaN or infinite ``total`` raises RuntimeError with
    ``error_if_nonfinite=True``; otherwise the gradients are scaled by the
    resulting NaN or 0, as in PyTorch. Only ``norm_type=2`` is supported.
    """
    op = "clip_grad_norm_"
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: argument 'parameters[{i}]' expected an attnkit.Tensor, got {type(p).__name__}")
        if p.grad is not None:
            grads.append(native_array(p.grad))
    if not isinstance(max_norm, numbers.Real) or isinstance(max_norm, bool):
        raise TypeError(f"{op}: argument 'max_norm' expected a float, got {type(max_norm).__name__}")
    max_norm = float(max_norm)
    if not isinstance(norm_type, numbers.Real) or isinstance(norm_type, bool) or float(norm_type) != 2.0:
        raise ValueError(f"{op}: argument 'norm_type' expected 2 (the L2 norm), got {norm_type!r}")
    if not grads:
        return 0.0
    total = math.sqrt(_C.sum_of_squares(grads))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"{op}: the total norm of the gradients is {total}; set error_if_nonfinite=False to clip anyway"
        )
    clip = max_norm / (total + 1e-6)
    if not clip >= 1.0:  # also when NaN, which then spreads to every gradient, as in PyTorch
        _C.scale_in_place(grads, clip)
    return total


__all__ = ["clip_grad_norm_"]
