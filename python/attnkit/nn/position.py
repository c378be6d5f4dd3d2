"""Absolute position modules: the fixed sinusoidal encoding of "Attention Is
All You Need" (section 3.5) and a learned table of position vectors (GPT-2,
BERT). Both hold ``max_len`` rows, row p for position p, and refuse positions
past the table with a ValueError that names ``max_len``.

(Rotary positions act inside attention instead: ``MultiHeadAttention(...,
rope=True)``.)
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _dtypes
from .._tensor_data import values_view
from ..ops import checks
from ..tensor import Tensor, arange, from_numpy
from . import functional as F
from .embedding import Embedding
from .module import Module


def _offset(op: str, offset) -> int:
    if not isinstance(offset, numbers.Integral) or isinstance(offset, bool):
        raise TypeError(f"{op}: argument 'offset' expected an int, got {type(offset).__name__}")
    if offset < 0:
        raise ValueError(f"{op}: argument 'offset' expected a position >= 0, got {offset}")
    return int(offset)


def _check_span(op: str, argument: str, offset: int, length: int, max_len: int) -> None:
    if offset + length > max_len:
        raise ValueError(
            f"{op}: positions {offset}..{offset + length - 1} (argument '{argument}' of length "
            f"{length} after offset {offset}) exceed the table of max_len={max_len} positions"
        )


class SinusoidalPositionalEncoding(Module):
    """``forward(x, offset=0)``: x float32 [batch, seq, d_model] plus the
    sinusoidal rows of positions offset .. offset + seq - 1 (with a KV cache,
    ``offset`` is the number of positions already decoded). ``encoding(seq_len,
    offset=0)`` gives those rows alone, [seq_len, d_model].

    The table (``F.sinusoidal_position_encoding``: sin on even columns, cos
    on odd ones, wavelengths from 2 pi to 10000 * 2 pi) is computed once, at
    construction, into the non-persistent buffer ``table`` [max_len, d_model].
    ``layout="halves"`` puts the same columns in another order: every sine
    first, then every cosine (Marian's OPUS-MT models, and fairseq's).
    The buffer is a function of the sizes alone, so a state_dict leaves it out. The
    module has no parameters and does no dropout (the model applies dropout
    to the sum, section 5.4).
    """

    def __init__(self, d_model: int, max_len: int = 5000, layout: str = "interleaved") -> None:
        super().__init__()
        self.d_model = checks.positive_int("SinusoidalPositionalEncoding", "d_model", d_model)
        self.max_len = checks.positive_int("SinusoidalPositionalEncoding", "max_len", max_len)
        if layout not in ("interleaved", "halves"):
            raise ValueError(
                f"SinusoidalPositionalEncoding: argument 'layout' expected 'interleaved' or 'halves', got {layout!r}"
            )
        self.layout = layout
        table = F.sinusoidal_position_encoding(self.max_len, self.d_model)
        if layout == "halves":
            values = values_view(table)
            table = from_numpy(np.ascontiguousarray(np.concatenate([values[:, 0::2], values[:, 1::2]], axis=1)))
        self.register_buffer("table", table, persistent=False)

    def encoding(self, seq_len: int, offset: int = 0) -> Tensor:
        """The rows of positions offset .. offset + seq_len - 1: [seq_len, d_model]."""
        op = "SinusoidalPositionalEncoding.encoding"
        seq_len = checks.positive_int(op, "seq_len", seq_len, allow_zero=True)
        offset = _offset(op, offset)
        _check_span(op, "seq_len", offset, seq_len, self.max_len)
        return F.narrow(self.table, 0, offset, seq_len)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        op = "SinusoidalPositionalEncoding"
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: argument 'x' expected an attnkit.Tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{op}: argument 'x' expected shape [batch, seq, {self.d_model}], got {list(x.shape)}")
        offset = _offset(op, offset)
        _check_span(op, "x", offset, x.shape[1], self.max_len)
        return x + F.narrow(self.table, 0, offset, x.shape[1])

    def extra_repr(self) -> str:
        layout = "" if self.layout == "interleaved" else f", layout={self.layout!r}"
        return f"d_model={self.d_model}, max_len={self.max_len}{layout}"


class LearnedPositionalEmbedding(Embedding):
    """A trained vector per position: ``weight`` float32 [max_len, d_model],
    initialized N(0, 1) as nn.Embedding (models set their own init).

    ``forward(positions, offset=0)``: an int ``seq_len`` gives the rows of
    positions offset .. offset + seq_len - 1, [seq_len, d_model], to add to
    token embeddings [batch, seq_len, d_model] by broadcasting; an int32/int64
    tensor of positions (any shape, for example [batch, seq] for left-padded
    prompts) gives ``weight[positions + offset]``, of shape
    [*positions.shape, d_model]. Differentiable in ``weight``.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__(
            checks.positive_int("LearnedPositionalEmbedding", "max_len", max_len),
            checks.positive_int("LearnedPositionalEmbedding", "d_model", d_model),
        )
        self.max_len, self.d_model = self.num_embeddings, self.embedding_dim

    def forward(self, positions, offset: int = 0) -> Tensor:
        op = "LearnedPositionalEmbedding"
        offset = _offset(op, offset)
        if isinstance(positions, Tensor):
            if positions.dtype not in (_dtypes.int32, _dtypes.int64):
                raise TypeError(f"{op}: argument 'positions' expected int32 or int64 positions, got {positions.dtype}")
            values = values_view(positions)
            if values.size == 0:
                return F.embedding(positions, self.weight)
            low, high = int(values.min()), int(values.max())
            if low < 0:
                raise ValueError(f"{op}: argument 'positions' expected positions >= 0, got {low}")
            if offset + high >= self.max_len:
                raise ValueError(
                    f"{op}: argument 'positions' reaches position {offset + high} (offset "
                    f"{offset}), past the table of max_len={self.max_len} positions"
                )
            if offset:
                positions = from_numpy(np.ascontiguousarray(values + offset))
            return F.embedding(positions, self.weight)
        seq_len = checks.positive_int(op, "positions", positions, allow_zero=True)
        _check_span(op, "positions", offset, seq_len, self.max_len)
        return F.embedding(arange(offset, offset + seq_len, dtype=_dtypes.int64), self.weight)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


__all__ = ["SinusoidalPositionalEncoding", "LearnedPositionalEmbedding"]
