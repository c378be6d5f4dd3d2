"""Softmax and log-softmax over the last dimension, with a scale."""

from __future__ import annotations

import numbers

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor


class _Softmax(Function):
    @staticmethod
    def forward(ctx, x, scale, log):
        ctx.scale = scale
        ctx.log = log
        y = _C.softmax_forward(x._array, scale, log)
        # Backward needs only the output: softmax' = f(y), never x.
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved
        return _C.softmax_backward(grad, y, ctx.scale, ctx.log), None, None


def _check_arguments(op: str, x, dim, scale) -> None:
    check_tensor(op, "x", x)
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{op}: argument 'dim' expected an int, got {type(dim).__name__}")
    ndim = x.ndim
    if ndim == 0:
        raise ValueError(f"{op}: argument 'x' expected a tensor with at least one dimension, got a 0-d tensor")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: argument 'dim' expected a dimension in [{-ndim}, {ndim}), got {dim}")
    if dim % ndim != ndim - 1:
        raise ValueError(
            f"{op}: argument 'dim' expected the last dimension (-1 or {ndim - 1}); "
            f"only the last dimension is supported, got {dim}"
        )
    if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"{op}: argument 'scale' expected a number, got {type(scale).__name__}")


def softmax(x: Tensor, dim: int = -1, scale: float = 1.0) -> Tensor:
    """``softmax(scale * x)`` along the last dimension: ``exp(scale (x_i - m)) /
    sum_j exp(scale (x_j - m))`` with ``m`` the row's max, so any logits (up to
    float32's range) and any scale are stable: the max is subtracted before
    scaling, and a huge scale (a temperature near 0) gives the one-hot limit
    (1 / k on a k-way tie). float32, any shape; ``dim`` must name the last
    dimension; ``scale`` is finite and > 0.

    ``-inf`` entries get probability 0. A row of only ``-inf`` (a fully masked
    row) gives 0 everywhere and a zero gradient, not NaN (PyTorch gives NaN);
    NaN in a row makes the whole row NaN. Differentiable; backward uses the
    output only."""
    _check_arguments("softmax", x, dim, scale)
    return _Softmax.apply(x, float(scale), False)


def log_softmax(x: Tensor, dim: int = -1, scale: float = 1.0) -> Tensor:
    """``log(softmax(scale * x))`` along the last dimension, computed as
    ``scale (x_i - m) - log sum_j exp(scale (x_j - m))`` (never as the log of
    a rounded probability). Same arguments as ``softmax``.

    ``-inf`` entries give ``-inf``. A row of only ``-inf`` gives ``-inf``
    everywhere (PyTorch gives NaN); its gradient follows the same formula as
    every row, ``scale * (dy - exp(y) * sum(dy))`` = ``scale * dy`` there.
    Differentiable; backward uses the output only."""
    _check_arguments("log_softmax", x, dim, scale)
    return _Softmax.apply(x, float(scale), True)
