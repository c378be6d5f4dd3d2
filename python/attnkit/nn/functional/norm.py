"""Normalizations over the last dimension: LayerNorm, RMSNorm, and the fused
residual add + LayerNorm of pre-LN Transformer blocks."""

from __future__ import annotations

import numbers

import numpy as np

from ... import _C
from ...autograd import Function
from ...tensor import Tensor
from ._common import check_int64, check_tensor

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


def _normalized_shape(op: str, normalized_shape) -> list:
    """An int or a sequence of ints, as a list (the ops check it against x)."""
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        check_int64(op, "normalized_shape", int(normalized_shape))
        return [int(normalized_shape)]
    # A sequence of ints, not any iterable: iterating a tensor of a huge leading
    # size would build a list of billions of tensors.
    dims = list(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(
            f"{op}: argument 'normalized_shape' expected an int or a tuple of ints, got {normalized_shape!r}"
        )
    check_int64(op, "normalized_shape", [int(d) for d in dims])
    return [int(d) for d in dims]


def _check_optional_tensor(op: str, argument: str, value) -> None:
    if value is not None:
        check_tensor(op, argument, value)


def _check_eps(op: str, eps) -> float:
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool):
        raise TypeError(f"{op}: argument 'eps' expected a number, got {type(eps).__name__}")
    return float(eps)


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
    _check_optional_tensor("layer_norm", "weight", weight)
    _check_optional_tensor("layer_norm", "bias", bias)
    shape = _normalized_shape("layer_norm", normalized_shape)
    return _LayerNorm.apply(x, weight, bias, shape, _check_eps("layer_norm", eps))


def rms_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """RMSNorm (Zhang and Sennrich, 2019) over the last dimension C:
    ``x / sqrt(mean(x^2) + eps) * weight``. ``eps`` defaults to float32's
    machine epsilon (2^-23), as in PyTorch. ``normalized_shape`` must be
    ``(C,)``; ``weight`` is float32 ``[C]`` or None. Rows of any magnitude, as
    ``layer_norm``. Differentiable in x and weight; saves 1/rms per row."""
    check_tensor("rms_norm", "x", x)
    _check_optional_tensor("rms_norm", "weight", weight)
    shape = _normalized_shape("rms_norm", normalized_shape)
    eps = _FLOAT32_EPS if eps is None else _check_eps("rms_norm", eps)
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
    _check_optional_tensor("add_layer_norm", "weight", weight)
    _check_optional_tensor("add_layer_norm", "bias", bias)
    shape = _normalized_shape("add_layer_norm", normalized_shape)
    return _AddLayerNorm.apply(x, residual, weight, bias, shape, _check_eps("add_layer_norm", eps))
