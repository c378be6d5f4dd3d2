"""Activations: GELU (exact and tanh)."""

from __future__ import annotations

from ... import _C
from ...autograd import Function
from ...tensor import Tensor
from ._common import check_tensor


class _Gelu(Function):
    @staticmethod
    def forward(ctx, x, approximate):
        ctx.approximate = approximate
        ctx.save_for_backward(x._array)
        return _C.gelu_forward(x._array, approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return _C.gelu_backward(grad, x, ctx.approximate), None


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, elementwise: ``x * Phi(x)`` with Phi the standard normal CDF
    (``approximate="none"``), or the tanh approximation
    ``x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``approximate="tanh"``).
    float32, any shape. Differentiable."""
    check_tensor("gelu", "x", x)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu: argument 'approximate' expected 'none' or 'tanh', got {approximate!r}")
    return _Gelu.apply(x, approximate)
