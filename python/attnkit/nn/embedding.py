"""Embedding: a table of vectors looked up by ids (PyTorch's defaults)."""

from __future__ import annotations

from .._tensor_data import values_view
from ..ops import checks
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional.embedding import resolve_padding_idx
from .module import Module
from .parameter import Parameter, empty_parameter


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``,
    looked up by int32/int64 ids of any shape (ids outside the table raise
    ValueError). ``weight``: float32 [num_embeddings, embedding_dim],
    initialized N(0, 1) as in PyTorch, from the default generator.

    ``padding_idx`` (as PyTorch's; negative counts from the end): that row
    starts as zeros and receives no gradient, so it stays as it is through
    training (a padding token's vector).
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *, _weight: Tensor | None = None
    ) -> None:
        super().__init__()
        self.num_embeddings = checks.positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = checks.positive_int("Embedding", "embedding_dim", embedding_dim)
        self.padding_idx = resolve_padding_idx("Embedding", padding_idx, self.num_embeddings)
        if _weight is None:
            self.weight = empty_parameter((self.num_embeddings, self.embedding_dim))
            self.reset_parameters()
        else:
            if not isinstance(_weight, Tensor) or tuple(_weight.shape) != (num_embeddings, embedding_dim):
                got = tuple(_weight.shape) if isinstance(_weight, Tensor) else type(_weight).__name__
                raise ValueError(
                    f"Embedding: argument '_weight' expected a tensor of shape "
                    f"({num_embeddings}, {embedding_dim}), got {got}"
                )
            self.weight = _weight if isinstance(_weight, Parameter) else Parameter(_weight)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None) -> Embedding:
        """An Embedding whose weight is ``embeddings`` (a 2-D float32 tensor,
        shared, not copied); ``freeze=True`` keeps it out of training. The
        ``padding_idx`` row is kept as given (not zeroed), as in PyTorch, and
        gets no gradient."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            got = embeddings.shape if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"Embedding.from_pretrained: argument 'embeddings' expected a 2-D tensor, got {got}")
        module = cls(embeddings.shape[0], embeddings.shape[1], padding_idx, _weight=Parameter(embeddings))
        module.weight.requires_grad_(not checks.flag("Embedding.from_pretrained", "freeze", freeze))
        return module

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            values_view(self.weight)[self.padding_idx] = 0.0

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text
