"""Embedding lookup."""

from __future__ import annotations

from ... import _C
from ...autograd import Function
from ...tensor import Tensor
from ._common import check_tensor


class _Embedding(Function):
    @staticmethod
    def forward(ctx, input, weight):
        ctx.num_embeddings = weight.shape[0]
        ctx.save_for_backward(input._array)
        return _C.embedding_forward(input._array, weight._array)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved
        return None, _C.embedding_backward(grad, indices, ctx.num_embeddings)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Looks up rows of ``weight``: ``out[..., :] = weight[input[...], :]``.

    ``input``: int32 or int64 token ids of any shape, each in
    [0, num_embeddings) (ValueError naming the first bad id otherwise).
    ``weight``: float32 [num_embeddings, embedding_dim]. Returns float32
    [*input.shape, embedding_dim]. Differentiable in ``weight``: its gradient
    sums the output gradient's rows per id, each row in position order, so
    it is bitwise the same for any thread count.
    """
    check_tensor("embedding", "input", input)
    check_tensor("embedding", "weight", weight)
    return _Embedding.apply(input, weight)
