"""Embedding lookup."""

from __future__ import annotations

import numbers

import numpy as np

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor


class _Embedding(Function):
    @staticmethod
    def forward(ctx, input, weight, padding_idx):
        ctx.num_embeddings = weight.shape[0]
        ctx.padding_idx = padding_idx
        ctx.save_for_backward(input._array)
        return _C.embedding_forward(input._array, weight._array)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved
        grad_weight = _C.embedding_backward(grad, indices, ctx.num_embeddings)
        if ctx.padding_idx is not None:
            # The padding row is looked up but never trained (PyTorch's
            # padding_idx): its gradient is zero however often it occurs.
            np.asarray(grad_weight)[ctx.padding_idx] = 0.0
        return None, grad_weight, None


def resolve_padding_idx(op: str, padding_idx, num_embeddings: int):
    """``padding_idx`` as a row number in [0, num_embeddings), or None.
    Negative values count from the end, as in PyTorch."""
    if padding_idx is None:
        return None
    if not isinstance(padding_idx, numbers.Integral) or isinstance(padding_idx, bool):
        raise TypeError(f"{op}: argument 'padding_idx' expected None or an int, got {type(padding_idx).__name__}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"{op}: argument 'padding_idx' expected an integer in [{-num_embeddings}, "
            f"{num_embeddings}) (num_embeddings={num_embeddings}), got {padding_idx}"
        )
    return int(padding_idx) % num_embeddings


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Looks up rows of ``weight``: ``out[..., :] = weight[input[...], :]``.

    ``input``: int32 or int64 token ids of any shape, each in
    [0, num_embeddings) (ValueError naming the first bad id otherwise).
    ``weight``: float32 [num_embeddings, embedding_dim]. Returns float32
    [*input.shape, embedding_dim]. Differentiable in ``weight``: its gradient
    sums the output gradient's rows per id, each row in position order, so
    it is bitwise the same for any thread count. ``padding_idx`` (negative
    counts from the end): that row's gradient is zero, as in PyTorch.
    """
    check_tensor("embedding", "input", input)
    check_tensor("embedding", "weight", weight)
    if padding_idx is not None:
        num_embeddings = weight.shape[0] if weight.ndim == 2 else 0
        padding_idx = resolve_padding_idx("embedding", padding_idx, num_embeddings)
    return _Embedding.apply(input, weight, padding_idx)
