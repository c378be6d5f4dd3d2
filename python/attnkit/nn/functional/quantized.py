"""Linear layers with int8 weights (``attnkit.quantize``): the weight is
stored as int8 values ``q`` with one float32 scale per output row, and stands
for ``scales[:, None] * q``; activations stay float32."""

from __future__ import annotations

import numpy as np

from ... import _C
from ..._dtypes import float32, int8
from ...autograd import Function, is_grad_enabled
from ...ops.checks import check_tensor
from ...ops.shape import reshape
from ...tensor import Tensor, from_numpy
from .linear import _ACTIVATIONS, activation_backward

# The largest magnitude of a symmetric int8 value: -128 is left out, so that
# q and -q are both representable and the scale maps max|w| to 127 exactly.
INT8_LEVELS = 127


def quantize_int8(weight) -> tuple:
    """Symmetric per-row (per output channel) int8 quantization of a float32
    ``[out_features, in_features]`` weight: ``scales[r] = max|weight[r]| / 127``
    and ``q[r] = round(weight[r] / scales[r])`` (nearest, ties to even), so
    ``scales[:, None] * q`` is the nearest such grid to the weight. A row of
    zeros gets scale 0. Returns (q int8, scales float32) as tensors. ValueError
    for a weight that is not finite."""
    values = np.asarray(weight._array if isinstance(weight, Tensor) else weight, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(
            f"quantize: argument 'weight' expected 2 dimensions [out_features, in_features], got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("quantize: argument 'weight' expected finite values, got NaN or infinity")
    largest = np.abs(values).max(axis=1) if values.shape[1] > 0 else np.zeros(values.shape[0], np.float32)
    scales = (largest / np.float32(INT8_LEVELS)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))[:, None]
    q = np.clip(np.rint(values / safe), -INT8_LEVELS, INT8_LEVELS).astype(np.int8)
    return from_numpy(np.ascontiguousarray(q)), from_numpy(scales)


def dequantize_int8(q: Tensor, scales: Tensor) -> Tensor:
    """``scales[:, None] * q`` as a float32 tensor (one rounding per value)."""
    return Tensor._wrap(_C.dequantize_int8(q._array, scales._array))


def pack_int8_dynamic(q: Tensor) -> tuple:
    """The int8 weight packed for ``linear_int8_dynamic``: (packed, row_sums)."""
    packed, row_sums = _C.pack_int8_dynamic(q._array)
    return Tensor._wrap(packed), Tensor._wrap(row_sums)


def int8_dynamic_available() -> bool:
    """Whether the CPU tier in use has int8 dot products (AVX512-VNNI: the
    avx512_vnni, avx512_bf16 and amx tiers), which dynamic quantization needs."""
    return bool(_C.int8_dynamic_available())


def linear_int8_dynamic(
    x: Tensor,
    packed: Tensor,
    row_sums: Tensor,
    scales: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """``linear_int8`` with the activations quantized too, per row and on the
    fly (symmetric: ``xs = max|x[i]| / 127``, ``xq = round(x / xs)``), and
    int8 x int8 -> int32 dot products (vpdpbusd): the exact product of the
    quantized operands, scaled by ``xs[i] * scales[j]``. ``packed`` and
    ``row_sums`` come from ``pack_int8_dynamic(weight)``. Faster than
    ``linear_int8`` on many rows, less accurate (the activations are
    rounded to 8 bits). Inference only (no gradient); RuntimeError where the
    CPU tier has no int8 dot products (``int8_dynamic_available()``)."""
    check_tensor("linear_int8_dynamic", "x", x)
    if activation not in _ACTIVATIONS:
        raise ValueError(
            "linear_int8_dynamic: argument 'activation' expected None, 'relu', 'gelu' or 'gelu_tanh', "
            f"got {activation!r}"
        )
    if bias is not None:
        check_tensor("linear_int8_dynamic", "bias", bias)
    if is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
        raise RuntimeError("linear_int8_dynamic: inference only; call it under attnkit.no_grad()")
    out, _ = _C.linear_int8_dynamic(
        x._array,
        packed._array,
        row_sums._array,
        scales._array,
        bias=None if bias is None else bias._array,
        activation=_ACTIVATIONS[activation],
    )
    return Tensor._wrap(out)


class _LinearInt8(Function):
    @staticmethod
    def forward(ctx, x, q, scales, bias, activation):
        need_pre = activation != "none" and is_grad_enabled() and ctx.needs_input_grad[0]
        out, pre = _C.linear_int8(
            x._array,
            q._array,
            scales._array,
            bias=None if bias is None else bias._array,
            activation=activation,
            save_pre_activation=need_pre,
        )
        ctx.activation = activation
        ctx.save_for_backward(q._array, scales._array, pre)
        return out

    @staticmethod
    def backward(ctx, grad):
        # The weight is frozen (int8); the input's gradient goes through the
        # dequantized weight, as the forward used it. The bias gets its own.
        q, scales, pre = ctx.saved
        grad_pre = activation_backward(grad, pre, ctx.activation)
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _C.matmul(grad_pre, _C.dequantize_int8(q, scales))[0]
        if ctx.needs_input_grad[3]:
            grad_bias = _C.bias_gradient(grad_pre)
        return grad_x, None, None, grad_bias, None


def linear_int8(
    x: Tensor, weight: Tensor, scales: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """``activation(x @ (scales[:, None] * weight).T + bias)`` for an int8
    ``weight`` [out_features, in_features] with float32 ``scales``
    [out_features]; ``x`` float32 [..., in_features]. Few rows of x (decode)
    read the weight once, 1 byte per value, and widen it in registers.
    Differentiable in ``x`` and ``bias`` (the int8 weight is frozen)."""
    check_tensor("linear_int8", "x", x)
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"linear_int8: argument 'activation' expected None, 'relu', 'gelu' or 'gelu_tanh', got {activation!r}"
        )
    for name, value, dtype in (("weight", weight, int8), ("scales", scales, float32)):
        if not isinstance(value, Tensor):
            raise TypeError(f"linear_int8: argument '{name}' expected an attnkit.Tensor, got {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"linear_int8: argument '{name}' expected dtype {dtype.name}, got {value.dtype.name}")
    if bias is not None:
        check_tensor("linear_int8", "bias", bias)
    squeeze = x.ndim == 1
    if squeeze:
        x = reshape(x, (1,) + x.shape)
    out = _LinearInt8.apply(x, weight, scales, bias, _ACTIVATIONS[activation])
    return reshape(out, out.shape[1:]) if squeeze else out
