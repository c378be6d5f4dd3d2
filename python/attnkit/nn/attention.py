"""Multi-head attention (Vaswani et al., 2017, section 3.2.2) with grouped-query
heads, optional rotary positions, and a preallocated KV cache for decoding.

The module only projects and reshapes; the attention itself is one fused
kernel, ``F.attention``, on the [batch, seq, heads, head_dim] layout that the
projections produce without any transpose.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _C
from .._tensor_data import values_view
from ..tensor import Tensor
from . import functional as F
from .layers import Linear, _flag, _positive_int
from .module import Module


class KVCache:
    """Keys and values of the positions decoded so far, for one attention
    layer: float32 ``k`` and ``v`` of shape [batch, max_len, num_kv_heads,
    head_dim], allocated once, and ``length``, the number of positions filled.

    ``update(k_new, v_new)`` writes [batch, t, num_kv_heads, head_dim] at
    positions length .. length + t - 1 and returns the keys and values of the
    first ``length`` positions (after the write). The cache is for inference:
    what it stores carries no gradient, so it refuses tensors that require one
    (run generation under ``attnkit.no_grad()``).
    """

    def __init__(self, batch: int, max_len: int, num_kv_heads: int, head_dim: int) -> None:
        self.batch = _positive_int("KVCache", "batch", batch)
        self.max_len = _positive_int("KVCache", "max_len", max_len)
        self.num_kv_heads = _positive_int("KVCache", "num_kv_heads", num_kv_heads)
        self.head_dim = _positive_int("KVCache", "head_dim", head_dim)
        shape = [self.batch, self.max_len, self.num_kv_heads, self.head_dim]
        self.k = Tensor._wrap(_C.zeros(shape, "float32"))
        self.v = Tensor._wrap(_C.zeros(shape, "float32"))
        self.length = 0

    def reset(self) -> None:
        """Forgets the cached positions (the memory is kept for reuse)."""
        self.length = 0

    def update(self, k_new: Tensor, v_new: Tensor) -> tuple:
        expected = (self.batch, None, self.num_kv_heads, self.head_dim)
        for name, t in (("k_new", k_new), ("v_new", v_new)):
            if not isinstance(t, Tensor):
                raise TypeError(f"KVCache.update: argument '{name}' expected an attnkit.Tensor, "
                                f"got {type(t).__name__}")
            if t.ndim != 4 or any(e is not None and e != s for e, s in zip(expected, t.shape)):
                raise ValueError(f"KVCache.update: argument '{name}' expected shape "
                                 f"[{self.batch}, t, {self.num_kv_heads}, {self.head_dim}], got {list(t.shape)}")
            if t.requires_grad:
                raise RuntimeError(f"KVCache.update: argument '{name}' requires grad; the cache stores no "
                                   f"gradient, so decode under attnkit.no_grad()")
        if k_new.shape != v_new.shape:
            raise ValueError(f"KVCache.update: 'k_new' and 'v_new' expected one shape, "
                             f"got {list(k_new.shape)} and {list(v_new.shape)}")
        steps = k_new.shape[1]
        if self.length + steps > self.max_len:
            raise ValueError(f"KVCache.update: {steps} new positions after {self.length} exceed "
                             f"max_len={self.max_len}")
        end = self.length + steps
        values_view(self.k)[:, self.length:end] = np.asarray(k_new._array)
        values_view(self.v)[:, self.length:end] = np.asarray(v_new._array)
        self.length = end
        # A view of the buffer when batch is 1, a contiguous copy of the filled
        # rows otherwise (F.attention reads contiguous [batch, seq, ...] tensors).
        return F.narrow(self.k, 1, 0, end), F.narrow(self.v, 1, 0, end)

    def __repr__(self) -> str:
        return (f"KVCache(batch={self.batch}, max_len={self.max_len}, num_kv_heads={self.num_kv_heads}, "
                f"head_dim={self.head_dim}, length={self.length})")


class MultiHeadAttention(Module):
    """``out_proj(attention(q, k, v))`` with ``num_heads`` query heads of size
    ``embed_dim / num_heads`` and ``num_kv_heads`` key/value heads (default:
    as many; fewer gives grouped-query attention, 1 multi-query).

    Parameters: with ``qkv_fused=True`` one ``qkv_proj`` Linear whose weight
    is [(H + 2 Hkv) * D, C] (rows: queries, then keys, then values), so
    self-attention projects with a single GEMM; with ``qkv_fused=False`` a
    ``q_proj`` [H * D, C] and a ``kv_proj`` [2 Hkv * D, C]. Either layout
    serves both self- and cross-attention (the fused weight is sliced for
    cross-attention). Then ``out_proj`` [C, H * D].

    ``forward(x, key_value=None, causal=False, key_padding_mask=None,
    cache=None)``: x [B, T, C]; ``key_value`` [B, S, C] for cross-attention;
    ``key_padding_mask`` bool [B, S] (True = padding, as PyTorch); ``cache``
    a ``KVCache`` for self-attention decoding: the new keys are appended and
    the queries, the last T positions, attend causally to everything cached.
    ``rope=True`` rotates queries and keys (``F.rope``, offset by the cache
    length). Returns [B, T, C].
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int | None = None, bias: bool = True,
                 dropout: float = 0.0, rope: bool = False, rope_base: float = 10000.0,
                 qkv_fused: bool = True) -> None:
        super().__init__()
        op = "MultiHeadAttention"
        self.embed_dim = _positive_int(op, "embed_dim", embed_dim)
        self.num_heads = _positive_int(op, "num_heads", num_heads)
        self.num_kv_heads = self.num_heads if num_kv_heads is None else _positive_int(op, "num_kv_heads",
                                                                                     num_kv_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{op}: argument 'embed_dim' ({embed_dim}) expected a multiple of num_heads "
                             f"({num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{op}: argument 'num_kv_heads' expected a divisor of num_heads ({num_heads}), "
                             f"got {num_kv_heads}")
        self.head_dim = self.embed_dim // self.num_heads
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{op}: argument 'dropout' expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.rope = _flag(op, "rope", rope)
        if self.rope and self.head_dim % 2:
            raise ValueError(f"{op}: rope needs an even head_dim, got {self.head_dim}")
        self.rope_base = float(rope_base)
        self.qkv_fused = _flag(op, "qkv_fused", qkv_fused)
        _flag(op, "bias", bias)
        query_width = self.num_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        if self.qkv_fused:
            self.qkv_proj = Linear(self.embed_dim, query_width + 2 * kv_width, bias=bias)
        else:
            self.q_proj = Linear(self.embed_dim, query_width, bias=bias)
            self.kv_proj = Linear(self.embed_dim, 2 * kv_width, bias=bias)
        self.out_proj = Linear(query_width, self.embed_dim, bias=bias)

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
            q = F.linear(x, F.narrow(weight, 0, 0, query_width),
                         None if bias is None else F.narrow(bias, 0, 0, query_width))
            kv = F.linear(key_value, F.narrow(weight, 0, query_width, 2 * kv_width),
                          None if bias is None else F.narrow(bias, 0, query_width, 2 * kv_width))
        else:
            q = self.q_proj(x)
            kv = self.kv_proj(x if key_value is None else key_value)
        k, v = F.split(kv, [kv_width, kv_width], dim=-1)
        return q, k, v

    def forward(self, x: Tensor, key_value: Tensor | None = None, causal: bool = False,
                key_padding_mask: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        op = "MultiHeadAttention"
        for name, t in (("x", x), ("key_value", key_value)):
            if t is None:
                continue
            if not isinstance(t, Tensor):
                raise TypeError(f"{op}: argument '{name}' expected an attnkit.Tensor, got {type(t).__name__}")
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(f"{op}: argument '{name}' expected shape [batch, seq, {self.embed_dim}], "
                                 f"got {list(t.shape)}")
        if key_value is not None and key_value.shape[0] != x.shape[0]:
            raise ValueError(f"{op}: 'key_value' expected batch {x.shape[0]} (that of x), got {key_value.shape[0]}")
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"{op}: argument 'cache' expected a KVCache, got {type(cache).__name__}")
            if key_value is not None:
                raise ValueError(f"{op}: a KVCache serves self-attention only; got key_value as well")
            if (cache.num_kv_heads, cache.head_dim) != (self.num_kv_heads, self.head_dim):
                raise ValueError(f"{op}: argument 'cache' expected {self.num_kv_heads} kv heads of size "
                                 f"{self.head_dim}, got {cache.num_kv_heads} of size {cache.head_dim}")
        batch, steps, _ = x.shape
        q, k, v = self._project(x, key_value)
        source_steps = k.shape[1]
        q = q.reshape(batch, steps, self.num_heads, self.head_dim)
        k = k.reshape(batch, source_steps, self.num_kv_heads, self.head_dim)
        v = v.reshape(batch, source_steps, self.num_kv_heads, self.head_dim)
        offset = 0 if cache is None else cache.length
        if self.rope:
            q = F.rope(q, offset=offset, base=self.rope_base)
            k = F.rope(k, offset=offset, base=self.rope_base)
        if cache is not None:
            k, v = cache.update(k, v)
            # New queries are the last positions of the cached sequence; the
            # cache holds only the past, so attention over it is causal.
            causal = True
        out = F.attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                          dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.reshape(batch, steps, self.num_heads * self.head_dim))

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        """A KVCache sized for this layer."""
        return KVCache(batch, max_len, self.num_kv_heads, self.head_dim)

    def extra_repr(self) -> str:
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.num_kv_heads != self.num_heads:
            text += f", num_kv_heads={self.num_kv_heads}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.rope:
            text += f", rope=True, rope_base={self.rope_base}"
        return text


__all__ = ["KVCache", "MultiHeadAttention"]
