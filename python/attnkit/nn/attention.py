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

from .._dtypes import bfloat16, float32
from ..ops import checks
from ..tensor import Tensor, from_numpy
from . import functional as F
from .functional.attention import attention_pattern_options
from .kv_cache import KVCache
from .linear import Linear
from .module import Module


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
        self.embed_dim = checks.positive_int(op, "embed_dim", embed_dim)
        self.num_heads = checks.positive_int(op, "num_heads", num_heads)
        self.num_kv_heads = (
            self.num_heads if num_kv_heads is None else checks.positive_int(op, "num_kv_heads", num_kv_heads)
        )
        if head_dim is None:
            if self.embed_dim % self.num_heads:
                raise ValueError(
                    f"{op}: argument 'embed_dim' ({embed_dim}) expected a multiple of num_heads ({num_heads})"
                )
            self.head_dim = self.embed_dim // self.num_heads
        else:
            self.head_dim = checks.positive_int(op, "head_dim", head_dim)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{op}: argument 'num_kv_heads' expected a divisor of num_heads ({num_heads}), got {num_kv_heads}"
            )
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{op}: argument 'dropout' expected a probability in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.rope = checks.flag(op, "rope", rope)
        if self.rope and self.head_dim % 2:
            raise ValueError(f"{op}: rope needs an even head_dim, got {self.head_dim}")
        self.rope_base = float(rope_base)
        self.rope_scaling = None if rope_scaling is None else dict(rope_scaling)
        self.rope_interleaved = checks.flag(op, "rope_interleaved", rope_interleaved)
        # Scaled frequencies are computed once; unscaled ones by the kernel from the base.
        self._rope_frequencies = None
        if self.rope and self.rope_scaling is not None:
            self._rope_frequencies = tuple(F.rope_frequencies(self.head_dim, self.rope_base, self.rope_scaling))
        if window is not None:
            window = checks.positive_int(op, "window", window)
        self.window = window
        self.pattern = sparse_pattern(op, pattern)
        self._patterns_by_length = {}
        self.qkv_fused = checks.flag(op, "qkv_fused", qkv_fused)
        checks.flag(op, "bias", bias)
        qkv_bias = bias if qkv_bias is None else checks.flag(op, "qkv_bias", qkv_bias)
        out_bias = bias if out_bias is None else checks.flag(op, "out_bias", out_bias)
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

    def make_cache(self, batch: int, max_len: int) -> KVCache:
        """A KVCache sized for this layer, in its projections' dtype."""
        return KVCache(batch, max_len, self.num_kv_heads, self.head_dim, dtype=self._projection_dtype())

    def _projection_dtype(self):
        """The dtype of the keys and values this layer computes: bfloat16 in
        a model converted to it, else float32 (int8 weights give float32)."""
        weight = getattr(self.out_proj, "weight", None)
        return bfloat16 if weight is not None and weight.dtype == bfloat16 else float32

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
