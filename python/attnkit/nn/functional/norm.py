"""Normalizations over the last dimension: LayerNorm, RMSNorm, and the fused
residual add + LayerNorm of pre-LN Transformer blocks."""

from __future__ import annotations

import numpy as np

from ... import _C
from ...autograd import Function
from ...ops import checks
from ...ops.checks import check_tensor
from ...tensor import Tensor

# PyTorch's default RMSNorm eps: the float32 machine epsilon, 2^-23.
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _array_or_none(t):
    return None if t is None else t._array


def _wants_grad(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


class _LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, normalized_shape, eps):
        y, mean, rstd = _C.layer_norm_forward(
            x._array, normalized_shape, _array_or_none(weight), _array_or_none(bias), eps
        )
        ctx.save_for_backward(x._array, _array_or_none(weight), mean, rstd)
        ctx.eps = eps
        ctx.weight_grad = _wants_grad(weight)
        ctx.bias_grad = _wants_grad(bias)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved
        dx, dweight, dbias = _C.layer_norm_backward(
            grad, x, weight, mean, rstd, ctx.eps, ctx.weight_grad, ctx.bias_grad
        )
        return dx, dweight, dbias, None, None


class _AddLayerNorm(Function):
    @staticmethod
    def forward(ctx, x, residual, weight, bias, normalized_shape, eps):
        total, y, mean, rstd = _C.add_layer_norm_forward(
            x._array, residual._array, normalized_shape, _array_or_none(weight), _array_or_none(bias), eps
        )
        ctx.save_for_backward(total, _array_or_none(weight), mean, rstd)
        ctx.eps = eps
        ctx.weight_grad = _wants_grad(weight)
        ctx.bias_grad = _wants_grad(bias)
        return total, y

    @staticmethod
    def backward(ctx, grad_sum, grad_normed):
        total, weight, mean, rstd = ctx.saved
        dx, dweight, dbias = _C.add_layer_norm_backward(
            grad_sum, grad_normed, total, weight, mean, rstd, ctx.eps, ctx.weight_grad, ctx.bias_grad
        )
        # x and residual have the same gradient; one array serves both (the
        # tape never writes into a gradient it was handed).
        return dx, dx, dweight, dbias, None, None


class _RmsNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, normalized_shape, eps):
        y, rstd = _C.rms_norm_forward(x._array, normalized_shape, _array_or_none(weight), eps)
        ctx.save_for_backward(x._array, _array_or_none(weight), rstd)
        ctx.eps = eps
        ctx.weight_grad = _wants_grad(weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved
        dx, dweight = _C.rms_norm_backward(grad, x, weight, rstd, ctx.eps, ctx.weight_grad)
        return dx, dweight, None, None


def layer_norm(
    x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """LayerNorm over the last dimension C: ``(x - mean) / sqrt(var + eps) *
    weight + bias``, with the biased variance, as PyTorch. ``normalized_shape``
    must be ``(C,)`` (or ``C``); ``weight`` and ``bias`` are float32 ``[C]`` or
    None. float32, any leading shape.

    The statistics are exact to float32 rounding also when the mean is much
    larger than the spread (a mean of 1e4 with a std of 1e-2), and for rows of
    any magnitude (each row is computed in units of a power of two near its
    largest value, so no square overflows or underflows float32); a constant
    row gives exactly ``bias``. Differentiable in x, weight and bias; saves the
    per-row mean and 1/std (float32, one value per row). The weight and bias
    gradients are the same bits for any thread count."""
    check_tensor("layer_norm", "x", x)
    checks.check_optional_tensor("layer_norm", "weight", weight)
    checks.check_optional_tensor("layer_norm", "bias", bias)
    shape = checks.normalized_shape("layer_norm", normalized_shape)
    return _LayerNorm.apply(x, weight, bias, shape, checks.real("layer_norm", "eps", eps, finite=False))


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """RMSNorm (Zhang and Sennrich, 2019) over the last dimension C:
    ``x / sqrt(mean(x^2) + eps) * weight``. ``eps`` defaults to float32's
    machine epsilon (2^-23), as in PyTorch. ``normalized_shape`` must be
    ``(C,)``; ``weight`` is float32 ``[C]`` or None. Rows of any magnitude, as
    ``layer_norm``. Differentiable in x and weight; saves 1/rms per row."""
    check_tensor("rms_norm", "x", x)
    checks.check_optional_tensor("rms_norm", "weight", weight)
    shape = checks.normalized_shape("rms_norm", normalized_shape)
    eps = _FLOAT32_EPS if eps is None else checks.real("rms_norm", "eps", eps, finite=False)
    return _RmsNorm.apply(x, weight, shape, eps)


def add_layer_norm(
    x: Tensor,
    residual: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
):
    """The residual add and LayerNorm of a pre-LN block, fused:
    returns ``(sum, normed)`` with ``sum = x + residual`` and ``normed =
    layer_norm(sum, normalized_shape, weight, bias, eps)``. One pass reads x
    and residual and writes both outputs. Same arguments as ``layer_norm``;
    residual has x's shape. Differentiable through both outputs."""
    check_tensor("add_layer_norm", "x", x)
    check_tensor("add_layer_norm", "residual", residual)
    checks.check_optional_tensor("add_layer_norm", "weight", weight)
    checks.check_optional_tensor("add_layer_norm", "bias", bias)
    shape = checks.normalized_shape("add_layer_norm", normalized_shape)
    return _AddLayerNorm.apply(
        x, residual, weight, bias, shape, checks.real("add_layer_norm", "eps", eps, finite=False)
    )
