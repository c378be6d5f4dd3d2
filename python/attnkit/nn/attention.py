"""Multi-head attention (Vaswani et al., 2017, section 3.2.2) with grouped-query
heads, optional rotary positions, and a preallocated KV cache for decoding.

The module only projects and reshapes; the attention itself is one fused
kernel, ``F.attention``, on the [batch, seq, heads, head_dim] layout that the
projections produce without any transpose. Plain self-attention with the fused
projection (no rope, no cache) uses ``F.attention_qkv``, which reads q, k and
v in place from the projection's output.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _C
from .._dtypes import bool_
from .._tensor_data import values_view
from ..tensor import Tensor, from_numpy
from . import functional as F
from .functional.attention import attention_pattern_options
from .layers import Linear, _flag, _positive_int
from .module import Module


class KVCache:
    """Keys and values of the positions decoded so far, for one attention
    layer: float32 ``k`` and ``v`` of shape [batch, max_len, num_kv_heads,
    head_dim], allocated once, and ``length``, the number of positions filled.
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

    def __init__(self, batch: int, max_len: int, num_kv_heads: int, head_dim: int) -> None:
        self.batch = _positive_int("KVCache", "batch", batch)
        self.max_len = _positive_int("KVCache", "max_len", max_len)
        self.num_kv_heads = _positive_int("KVCache", "num_kv_heads", num_kv_heads)
        self.head_dim = _positive_int("KVCache", "head_dim", head_dim)
        shape = [self.batch, self.max_len, self.num_kv_heads, self.head_dim]
        self.k = Tensor._wrap(_C.zeros(shape, "float32"))
        self.v = Tensor._wrap(_C.zeros(shape, "float32"))
        self.key_padding_mask = None
        # The filled length of every row, for F.attention's key_lengths when
        # a decoding step reads the whole buffer (see attention_inputs).
        self._key_lengths = Tensor._wrap(_C.zeros([self.batch], "int64"))
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
        self._k_values[:, self.length : end] = k_new._array
        self._v_values[:, self.length : end] = v_new._array
        if key_padding_mask is not None and self.key_padding_mask is None:
            self.key_padding_mask = Tensor._wrap(_C.zeros([self.batch, self.max_len], "bool"))
            self._padding_values = values_view(self.key_padding_mask)
        if self._padding_values is not None:
            self._padding_values[:, self.length : end] = False if key_padding_mask is None else key_padding_mask._array
        self.length = end

    def select(self, rows) -> None:
        """Row b of the cache becomes what row ``rows[b]`` was (``rows``: batch
        int indices, repeats allowed): beam search reorders its hypotheses'
        caches with it after each step."""
        op = "KVCache.select"
        index = np.asarray(rows._array) if isinstance(rows, Tensor) else np.asarray(rows)
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
            f"head_dim={self.head_dim}, length={self.length})"
        )


class MultiHeadAttention(Module):
    """``out_proj(attention(q, k, v))`` with ``num_heads`` query heads of size
    ``head_dim`` (default ``embed_dim / num_heads``) and ``num_kv_heads``
    key/value heads (default: as many; fewer gives grouped-query attention,
    1 multi-query).

    Parameters: with ``qkv_fused=True`` one ``qkv_proj`` Linear whose weight
    is [(H + 2 Hkv) * D, C] (rows: queries, then keys, then values), so
    self-attention projects with a single GEMM; with ``qkv_fused=False`` a
    ``q_proj`` [H * D, C] and a ``kv_proj`` [2 Hkv * D, C]. Either layout
    serves both self- and cross-attention (the fused weight is sliced for
    cross-attention). Then ``out_proj`` [C, H * D]. ``bias`` gives every
    projection a bias; ``qkv_bias`` and ``out_bias`` override it for the
    input projections and for out_proj (Qwen2 has the first, not the
    second).

    ``forward(x, key_value=None, causal=False, key_padding_mask=None,
    cache=None, positions=None)``: x [B, T, C]; ``key_value`` [B, S, C] for
    cross-attention; ``key_padding_mask`` bool [B, S] (True = padding, as
    PyTorch); ``cache`` a ``KVCache`` for self-attention decoding: the new
    keys are appended and the queries, the last T positions, attend causally
    to everything cached; with a cache, ``key_padding_mask`` is [B, T],
    marks which of the new positions are padding, and the cache keeps hiding
    them later. Returns [B, T, C].

    ``rope=True`` rotates queries and keys (``F.rope``) by their positions:
    0, 1, ... after the cached ones, or ``positions`` (int [B, T]) when
    given, as a left-padded batch needs. ``rope_base`` is theta,
    ``rope_scaling`` a Hugging Face ``rope_scaling`` dict (see
    ``F.rope_frequencies``), ``rope_interleaved`` the pairing of ``F.rope``
    (False: the "rotate half" layout of Hugging Face Llama checkpoints).
    ``window``: each query sees only the ``window`` most recent positions,
    itself included (Mistral's sliding window). ``pattern``: a sparse
    pattern of self-attention, a dict of F.attention's ``dilation``,
    ``global_tokens``, ``block_mask`` and ``block_size`` (Longformer's
    dilated windows and global tokens, BigBird's block layouts); positions
    count from the first cached one, and global tokens at or past the
    sequence's length are left out (those of a longer sequence).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        rope: bool = False,
        rope_base: float = 10000.0,
        qkv_fused: bool = True,
        *,
        head_dim: int | None = None,
        qkv_bias: bool | None = None,
        out_bias: bool | None = None,
        rope_scaling: dict | None = None,
        rope_interleaved: bool = True,
        window: int | None = None,
        pattern: dict | None = None,
    ) -> None:
        super().__init__()
        op = "MultiHeadAttention"
        self.embed_dim = _positive_int(op, "embed_dim", embed_dim)
        self.num_heads = _positive_int(op, "num_heads", num_heads)
        self.num_kv_heads = self.num_heads if num_kv_heads is None else _positive_int(op, "num_kv_heads", num_kv_heads)
        if head_dim is None:
            if self.embed_dim % self.num_heads:
                raise ValueError(
                    f"{op}: argument 'embed_dim' ({embed_dim}) expected a multiple of num_heads ({num_heads})"
                )
            self.head_dim = self.embed_dim // self.num_heads
        else:
            self.head_dim = _positive_int(op, "head_dim", head_dim)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{op}: argument 'num_kv_heads' expected a divisor of num_heads ({num_heads}), got {num_kv_heads}"
            )
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{op}: argument 'dropout' expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.rope = _flag(op, "rope", rope)
        if self.rope and self.head_dim % 2:
            raise ValueError(f"{op}: rope needs an even head_dim, got {self.head_dim}")
        self.rope_base = float(rope_base)
        self.rope_scaling = None if rope_scaling is None else dict(rope_scaling)
        self.rope_interleaved = _flag(op, "rope_interleaved", rope_interleaved)
        # Scaled frequencies are computed once; unscaled ones by the kernel from the base.
        self._rope_frequencies = None
        if self.rope and self.rope_scaling is not None:
            self._rope_frequencies = tuple(F.rope_frequencies(self.head_dim, self.rope_base, self.rope_scaling))
        if window is not None:
            window = _positive_int(op, "window", window)
        self.window = window
        self.pattern = sparse_pattern(op, pattern)
        self._patterns_by_length = {}
        self.qkv_fused = _flag(op, "qkv_fused", qkv_fused)
        _flag(op, "bias", bias)
        qkv_bias = bias if qkv_bias is None else _flag(op, "qkv_bias", qkv_bias)
        out_bias = bias if out_bias is None else _flag(op, "out_bias", out_bias)
        query_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        if self.qkv_fused:
            self.qkv_proj = Linear(self.embed_dim, query_width + 2 * kv_width, bias=qkv_bias)
        else:
            self.q_proj = Linear(self.embed_dim, query_width, bias=qkv_bias)
            self.kv_proj = Linear(self.embed_dim, 2 * kv_width, bias=qkv_bias)
        self.out_proj = Linear(query_width, self.embed_dim, bias=out_bias)

    def _project(self, x: Tensor, key_value: Tensor | None) -> tuple:
        """q [B, T, H*D], k and v [B, S, Hkv*D]."""
        query_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        if self.qkv_fused:
            weight, bias = self.qkv_proj.weight, self.qkv_proj.bias
            if key_value is None:
                return F.split(self.qkv_proj(x), [query_width, kv_width, kv_width], dim=-1)
            # Rows of the fused weight: narrowing dim 0 is a view, and its
            # gradient lands in the right rows of the one parameter.
            q = F.linear(
                x, F.narrow(weight, 0, 0, query_width), None if bias is None else F.narrow(bias, 0, 0, query_width)
            )
            kv = F.linear(
                key_value,
                F.narrow(weight, 0, query_width, 2 * kv_width),
                None if bias is None else F.narrow(bias, 0, query_width, 2 * kv_width),
            )
        else:
            q = self.q_proj(x)
            kv = self.kv_proj(x if key_value is None else key_value)
        k, v = F.split(kv, [kv_width, kv_width], dim=-1)
        return q, k, v

    def forward(
        self,
        x: Tensor,
        key_value: Tensor | None = None,
        causal: bool = False,
        key_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        op = "MultiHeadAttention"
        for name, t in (("x", x), ("key_value", key_value)):
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"{op}: argument '{name}' expected an attnkit.Tensor, got {type(t).__name__}")
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{op}: argument '{name}' expected shape [batch, seq, {self.embed_dim}], got {list(t.shape)}"
                )
        if key_value is not None and key_value.shape[0] != x.shape[0]:
            raise ValueError(f"{op}: 'key_value' expected batch {x.shape[0]} (that of x), got {key_value.shape[0]}")
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"{op}: argument 'cache' expected a KVCache, got {type(cache).__name__}")
            if key_value is not None:
                raise ValueError(f"{op}: a KVCache serves self-attention only; got key_value as well")
            if (cache.num_kv_heads, cache.head_dim) != (self.num_kv_heads, self.head_dim):
                raise ValueError(
                    f"{op}: argument 'cache' expected {self.num_kv_heads} kv heads of size "
                    f"{self.head_dim}, got {cache.num_kv_heads} of size {cache.head_dim}"
                )
        if positions is not None and not self.rope:
            raise ValueError(f"{op}: argument 'positions' is for rope=True (without rope no position enters here)")
        batch, steps, _ = x.shape
        dropout_p = self.dropout if self.training else 0.0
        if self.qkv_fused and key_value is None and cache is None and not self.rope:
            # Plain self-attention reads q, k and v straight from the fused
            # projection (and backward writes their gradients into one
            # array): no split, no concatenation. Rope rotates q and k, and
            # a cache stores k and v, so those paths split.
            out = F.attention_qkv(
                self.qkv_proj(x),
                self.num_heads,
                self.num_kv_heads,
                causal=causal,
                key_padding_mask=key_padding_mask,
                window=self.window,
                dropout_p=dropout_p,
                **self._pattern_for(steps),
            )
            return self.out_proj(out.reshape(batch, steps, self.num_heads * self.head_dim))
        q, k, v = self._project(x, key_value)
        source_steps = k.shape[1]
        q = q.reshape(batch, steps, self.num_heads, self.head_dim)
        k = k.reshape(batch, source_steps, self.num_kv_heads, self.head_dim)
        v = v.reshape(batch, source_steps, self.num_kv_heads, self.head_dim)
        if self.rope:
            rotation = {
                "offset": 0 if cache is None or positions is not None else cache.length,
                "base": self.rope_base,
                "interleaved": self.rope_interleaved,
                "positions": positions,
                "frequencies": self._rope_frequencies,
            }
            q = F.rope(q, **rotation)
            k = F.rope(k, **rotation)
        if cache is None:
            masking = {"causal": causal, "key_padding_mask": key_padding_mask, "window": self.window}
        else:
            # New queries are the last positions of the cached sequence; the
            # cache holds only the past, so attention over it is causal.
            k, v, masking = cache.attention_inputs(k, v, key_padding_mask, self.window, positional=bool(self.pattern))
        out = F.attention(q, k, v, dropout_p=dropout_p, **masking, **self._pattern_for(k.shape[1]))
        return self.out_proj(out.reshape(batch, steps, self.num_heads * self.head_dim))

    def _pattern_for(self, keys: int) -> dict:
        """The pattern's arguments for ``keys`` keys: the global tokens
        among them."""
        tokens = self.pattern.get("global_tokens")
        if tokens is None:
            return self.pattern
        if keys not in self._patterns_by_length:
            inside = tokens.numpy()[tokens.numpy() < keys]
            pattern = dict(self.pattern, global_tokens=from_numpy(inside) if inside.size else None)
            self._patterns_by_length[keys] = pattern
        return self._patterns_by_length[keys]

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        """A KVCache sized for this layer."""
        return KVCache(batch, max_len, self.num_kv_heads, self.head_dim)

    def extra_repr(self) -> str:
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.num_kv_heads != self.num_heads:
            text += f", num_kv_heads={self.num_kv_heads}"
        if self.head_dim * self.num_heads != self.embed_dim:
            text += f", head_dim={self.head_dim}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.rope:
            text += f", rope=True, rope_base={self.rope_base}"
            if self.rope_scaling is not None:
                text += f", rope_scaling={self.rope_scaling}"
            if not self.rope_interleaved:
                text += ", rope_interleaved=False"
        if self.window is not None:
            text += f", window={self.window}"
        if self.pattern:
            text += f", pattern=({', '.join(sorted(self.pattern))})"
        return text


_PATTERN_KEYS = ("dilation", "global_tokens", "block_mask", "block_size")


def sparse_pattern(op: str, pattern: dict | None) -> dict:
    """A sparse pattern (F.attention's dilation, global_tokens, block_mask
    and block_size) checked once, as the keyword arguments to pass: the
    positions and the mask as tensors; {} for None."""
    if pattern is None:
        return {}
    if not isinstance(pattern, dict):
        raise TypeError(f"{op}: argument 'pattern' expected a dict, got {type(pattern).__name__}")
    unknown = sorted(set(pattern) - set(_PATTERN_KEYS))
    if unknown:
        raise ValueError(f"{op}: argument 'pattern' expected keys among {', '.join(_PATTERN_KEYS)}, got {unknown[0]!r}")
    attention_pattern_options(op, **pattern)  # the checks, with the argument names
    checked = {}
    if pattern.get("dilation", 1) != 1:
        checked["dilation"] = pattern["dilation"]
    if pattern.get("global_tokens") is not None:
        tokens = pattern["global_tokens"]
        tokens = tokens if isinstance(tokens, Tensor) else from_numpy(np.asarray(tokens, np.int64))
        if tokens.numel() and tokens.numpy().min() < 0:
            raise ValueError(
                f"{op}: argument 'global_tokens' expected positions in [0, length), got {tokens.numpy().min()}"
            )
        checked["global_tokens"] = tokens
    if pattern.get("block_mask") is not None:
        mask = pattern["block_mask"]
        checked["block_mask"] = mask if isinstance(mask, Tensor) else from_numpy(np.ascontiguousarray(mask, bool))
        checked["block_size"] = pattern["block_size"]
    return checked


__all__ = ["KVCache", "MultiHeadAttention"]
