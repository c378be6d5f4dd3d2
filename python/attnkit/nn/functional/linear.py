"""linear: a matrix product with a fused bias + activation epilogue (matmul is
``attnkit.ops.gemm``)."""

from __future__ import annotations

from ... import _C
from ...autograd import Function, is_grad_enabled
from ...ops.checks import check_tensor
from ...ops.gemm import autocast_operands, gradient_operand
from ...ops.shape import reshape
from ...tensor import Tensor

_ACTIVATIONS = {None: "none", "relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}


def activation_backward(grad, pre, activation: str | None):
    """The gradient before a fused epilogue's activation, from the gradient
    after it and the saved pre-activation (native arrays)."""
    if activation == "relu":
        return _C.relu_backward(grad, pre)
    if activation in ("gelu", "gelu_tanh"):
        return _C.gelu_backward(grad, pre, "none" if activation == "gelu" else "tanh")
    return grad


class _Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, activation):
        # The pre-activation is kept only when a backward will use it.
        need_pre = activation != "none" and is_grad_enabled() and any(ctx.needs_input_grad[:3])
        ctx.low_precision, (x_array, weight_array) = autocast_operands(x, weight)
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
        grad_pre = activation_backward(grad, pre, ctx.activation)
        out_features, in_features = weight.shape
        grad_x = grad_weight = grad_bias = None
        operand = gradient_operand(grad_pre, ctx.low_precision)
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
    saved pre-activation. float32, differentiable; or bfloat16 x, weight
    and bias (a model in bfloat16: the bf16 GEMM, float32 sums and epilogue,
    a bfloat16 result rounded once; forward only)."""
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
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(
                f"linear: argument '{name}' expected {x.dtype} (the dtype of 'x'; convert one of them "
                f"explicitly), got {t.dtype}"
            )
    squeeze = x.ndim == 1
    if squeeze:
        x = reshape(x, (1,) + x.shape)
    out = _Linear.apply(x, weight, bias, _ACTIVATIONS[activation])
    return reshape(out, out.shape[1:]) if squeeze else out
