"""Matrix products: matmul (the linear op with its fused epilogue is
``nn.functional.linear``, on the same native GEMM)."""

from __future__ import annotations

from .. import _C
from ..autograd import Function
from ..tensor import Tensor
from .checks import check_tensor
from .shape import reshape


class _Matmul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a._array, b._array)
        out, _ = _C.matmul(a._array, b._array)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            # dA = dC B^T, summed over the batch dimensions A was broadcast along
            grad_a = _C.sum_to_shape(_C.matmul(grad, b, transpose_b=True)[0], list(a.shape))
        if ctx.needs_input_grad[1]:
            if len(b.shape) == 2 and len(a.shape) > 2:
                # one B for the whole batch: dB = A^T dC over the stacked rows, one product
                k, n = b.shape
                grad_b = _C.matmul(a.reshape([-1, k]), grad.reshape([-1, n]), transpose_a=True)[0]
            else:
                grad_b = _C.sum_to_shape(_C.matmul(a, grad, transpose_a=True)[0], list(b.shape))
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
        a = reshape(a, (1,) + a.shape)
        squeeze.append(-2)
    if b.ndim == 1:
        b = reshape(b, b.shape + (1,))
        squeeze.append(-1)
    out = _Matmul.apply(a, b)
    if squeeze:
        shape = list(out.shape)
        for axis in sorted(squeeze):
            del shape[axis]
        out = reshape(out, tuple(shape))
    return out
