"""Activations: GELU (exact and tanh), ReLU, SiLU, tanh and SwiGLU."""

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


class _Relu(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x._array)
        return _C.relu_forward(x._array)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return _C.relu_backward(grad, x)


class _Silu(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x._array)
        return _C.silu_forward(x._array)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return _C.silu_backward(grad, x)


class _Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        # x, not the output: tanh' = 1 - tanh^2 from the output is noise
        # where tanh(x) rounds to +-1; from x it keeps full accuracy.
        ctx.save_for_backward(x._array)
        return _C.tanh_forward(x._array)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return _C.tanh_backward(grad, x)


class _Swiglu(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x._array)  # the output is recomputed in backward, not saved
        return _C.swiglu_forward(x._array)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return _C.swiglu_backward(grad, x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, elementwise: ``x * Phi(x)`` with Phi the standard normal CDF
    (``approximate="none"``), or the tanh approximation
    ``x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``approximate="tanh"``).
    float32, any shape. Differentiable."""
    check_tensor("gelu", "x", x)
    if not isinstance(approximate, str):
        raise TypeError(f"gelu: argument 'approximate' expected 'none' or 'tanh', got {approximate!r}")
    return _Gelu.apply(x, approximate)


def relu(x: Tensor) -> Tensor:
    """ReLU, elementwise: ``max(x, 0)``; NaN stays NaN. float32, any shape.
    Differentiable; the gradient at 0 is 0, as in PyTorch."""
    check_tensor("relu", "x", x)
    return _Relu.apply(x)


def silu(x: Tensor) -> Tensor:
    """SiLU (swish), elementwise: ``x * sigmoid(x)``, accurate in both tails.
    float32, any shape. Differentiable."""
    check_tensor("silu", "x", x)
    return _Silu.apply(x)


def tanh(x: Tensor) -> Tensor:
    """The hyperbolic tangent, elementwise, within 1.4 ulp of the exact value
    (the gradient within 3): accurate near 0 (no ``1 - 2/(exp(2x) + 1)``
    cancellation), saturating to +-1 without overflow, and with a gradient
    ``1 - tanh(x)^2`` computed from x, so it keeps its relative accuracy in
    the tails where tanh(x) rounds to +-1. float32, any shape. Differentiable."""
    check_tensor("tanh", "x", x)
    return _Tanh.apply(x)


def swiglu(x: Tensor) -> Tensor:
    """SwiGLU with a fused gate: ``x`` is ``[..., 2H]``, the gate projection
    in its first half and the up projection in its second (one Linear computing
    both); returns ``silu(x[..., :H]) * x[..., H:]``, shape ``[..., H]``.
    Forward and backward each make one pass over memory; the gradient has
    x's shape. float32. Differentiable."""
    check_tensor("swiglu", "x", x)
    return _Swiglu.apply(x)
