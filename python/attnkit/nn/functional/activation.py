"""Activations: GELU (exact and tanh), ReLU, SiLU, tanh and SwiGLU."""

from __future__ import annotations

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor


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


class _SavedInputActivation(Function):
    """An elementwise op whose backward kernel reads the input x, which
    forward saves: ``forward_kernel(x)`` and ``backward_kernel(dy, x)``."""

    forward_kernel = backward_kernel = None

    @classmethod
    def forward(cls, ctx, x):
        ctx.save_for_backward(x._array)
        return cls.forward_kernel(x._array)

    @classmethod
    def backward(cls, ctx, grad):
        (x,) = ctx.saved
        return cls.backward_kernel(grad, x)


class _Relu(_SavedInputActivation):
    forward_kernel, backward_kernel = staticmethod(_C.relu_forward), staticmethod(_C.relu_backward)


class _Silu(_SavedInputActivation):
    forward_kernel, backward_kernel = staticmethod(_C.silu_forward), staticmethod(_C.silu_backward)


class _Tanh(_SavedInputActivation):
    # x, not the output: tanh' = 1 - tanh^2 from the output is noise where
    # tanh(x) rounds to +-1; from x it keeps full accuracy.
    forward_kernel, backward_kernel = staticmethod(_C.tanh_forward), staticmethod(_C.tanh_backward)


class _Swiglu(_SavedInputActivation):
    # The output is recomputed in backward, not saved.
    forward_kernel, backward_kernel = staticmethod(_C.swiglu_forward), staticmethod(_C.swiglu_backward)


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
