"""Matrix products: matmul and linear (with a fused bias + activation epilogue)."""

from __future__ import annotations

from ... import _C
from ..._dtypes import float32
from ...amp import autocast_dtype
from ...autograd import Function, is_grad_enabled
from ...tensor import Tensor
from ._common import check_tensor

_ACTIVATIONS = {None: "none", "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}


def _autocast_operands(*tensors):
    """The arrays a product multiplies: under ``autocast``, float32 operands
    rounded to bfloat16 (the result stays float32); else the tensors' own."""
    if autocast_dtype() is not None and all(t.dtype == float32 for t in tensors):
        return True, [_C.cast(t._array, "bfloat16") for t in tensors]
    return False, [t._array for t in tensors]


def _gradient_operand(grad, low_precision):
    """An incoming float32 gradient as a backward product's operand: in
    bfloat16 when the forward ran under autocast, as PyTorch's does."""
    return _C.cast(grad, "bfloat16") if low_precision else grad


class _Matmul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.low_precision, (a_array, b_array) = _autocast_operands(a, b)
        ctx.save_for_backward(a_array, b_array)
        out, _ = _C.matmul(a_array, b_array, out_dtype="float32" if ctx.low_precision else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        grad = _gradient_operand(grad, ctx.low_precision)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            # dA = dC B^T, summed over the batch dimensions A was broadcast along
            grad_a = _C.sum_to_shape(_C.matmul(grad, b, transpose_b=True, out_dtype="float32")[0], list(a.shape))
        if ctx.needs_input_grad[1]:
            if len(b.shape) == 2 and len(a.shape) > 2:
                # one B for the whole batch: dB = A^T dC over the stacked rows, one product
                k, n = b.shape
                grad_b = _C.matmul(a.reshape([-1, k]), grad.reshape([-1, n]), transpose_a=True, out_dtype="float32")[0]
            else:
                grad_b = _C.sum_to_shape(_C.matmul(a, grad, transpose_a=True, out_dtype="float32")[0], list(b.shape))
        return grad_a, grad_b


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with numpy.matmul's semantics: 2-D matrices, batches
    ``[..., M, K] @ [..., K, N]`` with broadcast batch dimensions, and 1-D
    operands promoted to a row (a) or a column (b) and removed from the result.
    float32. Differentiable."""
    check_tensor("matmul", "a", a)
    check_tensor("matmul", "b", b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: arguments must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    squeeze = []
    if a.ndim == 1:
        a = _view(a, (1,) + a.shape)
        squeeze.append(-2)
    if b.ndim == 1:
        b = _view(b, b.shape + (1,))
        squeeze.append(-1)
    out = _Matmul.apply(a, b)
    if squeeze:
        shape = list(out.shape)
        for axis in sorted(squeeze):
            del shape[axis]
        out = _view(out, tuple(shape))
    return out


class _Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = list(x.shape)
        return x._array.reshape(list(shape))

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape), None


def _view(x: Tensor, shape) -> Tensor:
    return _Reshape.apply(x, tuple(shape))


class _Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, activation):
        # The pre-activation is kept only when a backward will use it.
        need_pre = activation != "none" and is_grad_enabled() and any(ctx.needs_input_grad[:3])
        ctx.low_precision, (x_array, weight_array) = _autocast_operands(x, weight)
        out, pre = _C.matmul(
            x_array,
            weight_array,
            transpose_b=True,
            bias=None if bias is None else bias._array,
            activation=activation,
            save_pre_activation=need_pre,
            out_dtype="float32" if ctx.low_precision else None,
        )
        ctx.activation = activation
        ctx.save_for_backward(x_array, weight_array, pre)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, pre = ctx.saved
        if ctx.activation == "relu":
            grad_pre = _C.relu_backward(grad, pre)
        elif ctx.activation in ("gelu", "gelu_tanh"):
            grad_pre = _C.gelu_backward(grad, pre, "none" if ctx.activation == "gelu" else "tanh")
        else:
            grad_pre = grad
        out_features, in_features = weight.shape
        grad_x = grad_weight = grad_bias = None
        operand = _gradient_operand(grad_pre, ctx.low_precision)
        if ctx.needs_input_grad[0]:
            grad_x = _C.matmul(operand, weight, out_dtype="float32")[0]  # dX = dY W
        if ctx.needs_input_grad[1]:
            # dW = dY^T X, over all leading dimensions stacked into rows
            grad_weight = _C.matmul(
                operand.reshape([-1, out_features]),
                x.reshape([-1, in_features]),
                transpose_a=True,
                out_dtype="float32",
            )[0]
        if ctx.needs_input_grad[2]:
            grad_bias = _C.bias_gradient(grad_pre)
        return grad_x, grad_weight, grad_bias, None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """``activation(x @ weight.T + bias)`` with ``weight`` of shape
    ``[out_features, in_features]`` as in PyTorch, ``x`` of shape
    ``[..., in_features]``. The bias and the activation (None, "relu", "gelu"
    or "gelu_tanh") are fused into the product's epilogue; backward uses the
    saved pre-activation. float32. Differentiable."""
    check_tensor("linear", "x", x)
    check_tensor("linear", "weight", weight)
    if bias is not None:
        check_tensor("linear", "bias", bias)
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"linear: argument 'activation' expected None, 'relu', 'gelu' or 'gelu_tanh', got {activation!r}"
        )
    if weight.ndim != 2:
        raise ValueError(
            f"linear: argument 'weight' expected 2 dimensions [out_features, in_features], got shape {weight.shape}"
        )
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: argument 'x' expected a last dimension of {weight.shape[1]} "
            f"(weight's in_features), got shape {x.shape}"
        )
    squeeze = x.ndim == 1
    if squeeze:
        x = _view(x, (1,) + x.shape)
    out = _Linear.apply(x, weight, bias, _ACTIVATIONS[activation])
    return _view(out, out.shape[1:]) if squeeze else out
