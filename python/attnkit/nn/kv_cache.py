"""KVCache: the keys and values of the positions decoded so far, for one
attention layer (preallocated; attention reads only the filled part)."""

from __future__ import annotations

import numpy as np

from .._dtypes import as_dtype, bfloat16, bool_, float32, int64
from .._tensor_data import values_view
from ..ops import checks
from ..tensor import Tensor, zeros
from . import functional as F


class KVCache:
    """Keys and values of the positions decoded so far, for one attention
    layer: ``k`` and ``v`` of shape [batch, max_len, num_kv_heads,
    head_dim] in ``dtype`` (float32, or bfloat16 for a model in bfloat16:
    half the memory), allocated once, and ``length``, the number of
    positions filled.
    Positions marked as padding (left-padded prompts of different lengths)
    are remembered in ``key_padding_mask`` (bool [batch, max_len], True =
    padding; None while no padding was written) and never attended.

    ``append(k_new, v_new, key_padding_mask=None)`` writes [batch, t,
    num_kv_heads, head_dim] at positions length .. length + t - 1.
    ``update(k_new, v_new)`` appends and returns the keys and values of the
    filled positions (a view when batch is 1, a copy otherwise).
    ``select(rows)`` reorders the batch rows (beam search).
    ``MultiHeadAttention`` appends and then attends with ``attention_inputs``,
    which needs no copy when decoding one position at a time. The cache is
    for inference: what it stores carries no gradient, so it refuses tensors
    that require one (run generation under ``attnkit.no_grad()``).
    """

    def __init__(self, batch: int, max_len: int, num_kv_heads: int, head_dim: int, dtype=float32) -> None:
        self.batch = checks.positive_int("KVCache", "batch", batch)
        self.max_len = checks.positive_int("KVCache", "max_len", max_len)
        self.num_kv_heads = checks.positive_int("KVCache", "num_kv_heads", num_kv_heads)
        self.head_dim = checks.positive_int("KVCache", "head_dim", head_dim)
        self.dtype = as_dtype(dtype, "KVCache")
        if self.dtype not in (float32, bfloat16):
            raise TypeError(f"KVCache: argument 'dtype' expected float32 or bfloat16, got {self.dtype}")
        shape = [self.batch, self.max_len, self.num_kv_heads, self.head_dim]
        self.k = zeros(shape, dtype=self.dtype)
        self.v = zeros(shape, dtype=self.dtype)
        self.key_padding_mask = None
        # The filled length of every row, for F.attention's key_lengths when
        # a decoding step reads the whole buffer (see attention_inputs).
        self._key_lengths = zeros(self.batch, dtype=int64)
        # numpy views of the buffers, made once: every decoding step writes
        # through them.
        self._k_values, self._v_values = values_view(self.k), values_view(self.v)
        self._key_lengths_values = values_view(self._key_lengths)
        self._padding_values = None
        self.length = 0

    def reset(self) -> None:
        """Forgets the cached positions (the memory is kept for reuse)."""
        self.length = 0
        self.key_padding_mask = None
        self._padding_values = None

    def append(self, k_new: Tensor, v_new: Tensor, key_padding_mask: Tensor | None = None) -> None:
        """Writes the keys and values of t new positions; ``key_padding_mask``
        bool [batch, t] marks the ones that are padding."""
        op = "KVCache.append"
        for name, t in (("k_new", k_new), ("v_new", v_new)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{op}: argument '{name}' expected an attnkit.Tensor, got {type(t).__name__}")
            shape = t.shape
            if len(shape) != 4 or (shape[0], shape[2], shape[3]) != (self.batch, self.num_kv_heads, self.head_dim):
                raise ValueError(
                    f"{op}: argument '{name}' expected shape "
                    f"[{self.batch}, t, {self.num_kv_heads}, {self.head_dim}], got {list(shape)}"
                )
            if t.dtype != self.dtype:
                raise TypeError(f"{op}: argument '{name}' expected {self.dtype} (the cache's dtype), got {t.dtype}")
            if t.requires_grad:
                raise RuntimeError(
                    f"{op}: argument '{name}' requires grad; the cache stores no "
                    f"gradient, so decode under attnkit.no_grad()"
                )
        if k_new.shape != v_new.shape:
            raise ValueError(
                f"{op}: 'k_new' and 'v_new' expected one shape, got {list(k_new.shape)} and {list(v_new.shape)}"
            )
        steps = k_new.shape[1]
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor):
                raise TypeError(
                    f"{op}: argument 'key_padding_mask' expected an attnkit.Tensor, "
                    f"got {type(key_padding_mask).__name__}"
                )
            if key_padding_mask.dtype != bool_ or list(key_padding_mask.shape) != [self.batch, steps]:
                raise ValueError(
                    f"{op}: argument 'key_padding_mask' expected bool of shape "
                    f"[{self.batch}, {steps}], got {key_padding_mask.dtype} of shape "
                    f"{list(key_padding_mask.shape)}"
                )
        if self.length + steps > self.max_len:
            raise ValueError(f"{op}: {steps} new positions after {self.length} exceed max_len={self.max_len}")
        end = self.length + steps
        self._k_values[:, self.length : end] = values_view(k_new)
        self._v_values[:, self.length : end] = values_view(v_new)
        if key_padding_mask is not None and self.key_padding_mask is None:
            self.key_padding_mask = zeros(self.batch, self.max_len, dtype=bool_)
            self._padding_values = values_view(self.key_padding_mask)
        if self._padding_values is not None:
            self._padding_values[:, self.length : end] = (
                False if key_padding_mask is None else values_view(key_padding_mask)
            )
        self.length = end

    def select(self, rows) -> None:
        """Row b of the cache becomes what row ``rows[b]`` was (``rows``: batch
        int indices, repeats allowed): beam search reorders its hypotheses'
        caches with it after each step."""
        op = "KVCache.select"
        index = values_view(rows) if isinstance(rows, Tensor) else np.asarray(rows)
        if index.shape != (self.batch,) or (index.size and index.dtype.kind not in "iu"):
            raise ValueError(
                f"{op}: argument 'rows' expected {self.batch} int indices, "
                f"got {index.dtype} of shape {list(index.shape)}"
            )
        if index.size and (index.min() < 0 or index.max() >= self.batch):
            raise ValueError(
                f"{op}: argument 'rows' expected indices in [0, {self.batch}), "
                f"got {index.min() if index.min() < 0 else index.max()}"
            )
        filled = slice(0, self.length)
        for buffer in (self.k, self.v, self.key_padding_mask):
            if buffer is not None:
                values = values_view(buffer)
                values[:, filled] = values[index, filled]  # the right side is a copy: no overlap

    def update(self, k_new: Tensor, v_new: Tensor) -> tuple:
        """Appends, then returns the keys and values of the filled positions."""
        self.append(k_new, v_new)
        return self._filled(self.k), self._filled(self.v)

    def _filled(self, buffer: Tensor) -> Tensor:
        # A view of the buffer when batch is 1, a contiguous copy of the filled
        # rows otherwise (F.attention reads contiguous [batch, seq, ...] tensors).
        return F.narrow(buffer, 1, 0, self.length)

    def attention_inputs(
        self,
        k_new: Tensor,
        v_new: Tensor,
        key_padding_mask: Tensor | None = None,
        window: int | None = None,
        positional: bool = False,
    ) -> tuple:
        """Appends the new positions, then returns ``(k, v, masking)``: the
        keys, values and F.attention keyword arguments with which the new
        queries, the last positions of the cached sequence, attend causally
        (and within a sliding ``window`` of positions, when given) to
        everything cached that is not padding.

        - First call (empty cache): the new keys themselves, no copy.
        - One new position, batch > 1 (or padding), no window in reach: the
          whole buffer, with ``key_lengths`` = length hiding the unfilled
          rest. The query is the last position, so nothing past it is
          visible anyway, and the decode kernel reads the buffer in place
          instead of a per-token copy of the filled rows. (The kernel still
          walks the hidden keys, a few ns each: far less than the copy, but
          more than the free view of batch 1.)
        - One new position past the window: the last ``window`` positions,
          all of them visible (F.attention places the query at the last key,
          so a window over the whole buffer would be measured from its end).
        - Otherwise: the filled positions, a view when batch is 1, a copy
          otherwise. Always so when ``positional`` (a sparse pattern: its
          global tokens, block mask and dilation name positions, which hold
          only when the keys are the filled positions from 0 on).
        """
        first = self.length
        self.append(k_new, v_new, key_padding_mask)
        steps = self.length - first
        if first == 0:
            return k_new, v_new, {"causal": True, "key_padding_mask": key_padding_mask, "window": window}
        if steps == 1 and window is not None and self.length > window and not positional:
            start = self.length - window
            padding = None if self.key_padding_mask is None else F.narrow(self.key_padding_mask, 1, start, window)
            return (
                F.narrow(self.k, 1, start, window),
                F.narrow(self.v, 1, start, window),
                {"causal": True, "key_padding_mask": padding},
            )
        if steps == 1 and (self.batch > 1 or self.key_padding_mask is not None) and not positional:
            self._key_lengths_values[...] = self.length
            return (
                self.k,
                self.v,
                {"causal": True, "key_lengths": self._key_lengths, "key_padding_mask": self.key_padding_mask},
            )
        padding = None if self.key_padding_mask is None else self._filled(self.key_padding_mask)
        masking = {"causal": True, "key_padding_mask": padding, "window": window}
        return self._filled(self.k), self._filled(self.v), masking

    def __repr__(self) -> str:
        return (
            f"KVCache(batch={self.batch}, max_len={self.max_len}, num_kv_heads={self.num_kv_heads}, "
            f"head_dim={self.head_dim}, dtype={self.dtype}, length={self.length})"
        )
