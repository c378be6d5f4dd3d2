"""Scaled dot-product attention, fused and flash-style."""

from __future__ import annotations

from ... import _C
from ..._dtypes import bool_, int32, int64
from ...autograd import Function, is_grad_enabled
from ...ops.checks import check_int64, check_tensor
from ...random import _generator_or_default
from ...tensor import Tensor


class _Attention(Function):
    @staticmethod
    def forward(ctx, q, k, v, options):
        # Without a backward to come (generation with a cache), a few query
        # rows may take the decode path, which reads the cache once.
        for_backward = is_grad_enabled() and any(ctx.needs_input_grad)
        out, lse = _C.attention_forward(q._array, k._array, v._array, for_backward=for_backward, **options)
        ctx.options = options
        ctx.save_for_backward(q._array, k._array, v._array, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, out, lse = ctx.saved
        dq, dk, dv = _C.attention_backward(grad, q, k, v, out, lse, **ctx.options)
        return dq, dk, dv, None


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator=None,
) -> Tensor:
    """softmax(scale * q k^T + mask) v, fused: the Tq x Tk matrix is never
    materialized; backward recomputes it tile by tile from the saved
    log-sum-exp of each query row.

    Layout: q ``[batch, Tq, heads, head_dim]``; k and v ``[batch, Tk, kv_heads,
    head_dim]``, where kv_heads divides heads (grouped-query attention: query
    head h reads key/value head ``h // (heads // kv_heads)``; kv_heads = 1 is
    multi-query). Returns ``[batch, Tq, heads, head_dim]``. float32.

    Positions: query i sits at position ``i + Tk - Tq``, so the queries are
    the last Tq positions of the keys, as when decoding with a KV cache.

    - ``causal``: key j is visible to query i only when ``j <= i + Tk - Tq``.
    - ``window=W``: key j is visible only when ``|(i + Tk - Tq) - j| < W``; with
      ``causal`` that leaves the W most recent keys (Longformer, Mistral).
    - ``key_padding_mask``: bool ``[batch, Tk]``, True marks a padded key to
      ignore (PyTorch's convention). ``key_lengths``: int ``[batch]``, keys at
      or past the length are padding. Padded keys never reach the result, even
      when they hold NaN or inf. (Keys hidden only by ``causal`` or ``window``
      are different: they are real keys other queries see, and in training
      they enter the tile products with weight 0, so a NaN there spreads as
      it does in PyTorch's unfused attention.)
    - ``scale`` defaults to ``1 / sqrt(head_dim)``.
    - ``dropout_p``: attention dropout on the normalized weights, as in
      PyTorch's scaled_dot_product_attention (applied whenever it is > 0: pass
      0 in evaluation). The mask comes from the next Philox stream of
      ``generator`` (default: ``attnkit.manual_seed``'s), is the same for any
      thread count, and is regenerated in backward, never stored.

    A query row that can see no key gets an output of 0 (and zero gradients),
    not NaN. Differentiable in q, k and v.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor("attention", name, t)
    options = _options("attention", causal, key_padding_mask, key_lengths, window, scale, dropout_p, generator)
    return _Attention.apply(q, k, v, options)


class _AttentionQKV(Function):
    @staticmethod
    def forward(ctx, qkv, heads, options):
        for_backward = is_grad_enabled() and any(ctx.needs_input_grad)
        out, lse = _C.attention_qkv_forward(qkv._array, heads[0], heads[1], for_backward=for_backward, **options)
        ctx.heads, ctx.options = heads, options
        ctx.save_for_backward(qkv._array, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        qkv, out, lse = ctx.saved
        grad_qkv = _C.attention_qkv_backward(grad, qkv, out, lse, ctx.heads[0], ctx.heads[1], **ctx.options)
        return grad_qkv, None, None


def attention_qkv(
    qkv: Tensor,
    num_heads: int,
    num_kv_heads: int | None = None,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator=None,
) -> Tensor:
    """Self-attention read straight from a fused projection: ``qkv`` is
    ``[batch, T, (num_heads + 2 num_kv_heads) * head_dim]``, each row the
    queries of the ``num_heads`` heads, then the keys and then the values of
    the ``num_kv_heads`` heads (default: as many as queries), as a fused
    ``qkv_proj`` Linear produces them. The result, ``[batch, T, num_heads,
    head_dim]``, and the gradient are those of :func:`attention` on the three
    slices, bit for bit, without copying the slices out (nor concatenating
    their gradients: backward writes d(qkv) in place). The options are those
    of :func:`attention`. float32.
    """
    op = "attention_qkv"
    check_tensor(op, "qkv", qkv)
    if num_kv_heads is None:
        num_kv_heads = num_heads
    for name, value in (("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{op}: argument '{name}' expected an int, got {type(value).__name__}")
        check_int64(op, name, value)
    options = _options(op, causal, key_padding_mask, key_lengths, window, scale, dropout_p, generator)
    return _AttentionQKV.apply(qkv, (num_heads, num_kv_heads), options)


def _options(op: str, causal, key_padding_mask, key_lengths, window, scale, dropout_p, generator) -> dict:
    """The keyword arguments of the native attention entry points, checked."""
    options = {"causal": bool(causal), "window": 0, "scale": 0.0, "key_lengths": None, "key_padding_mask": None}
    if window is not None:
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"{op}: argument 'window' expected a positive int, got {window!r}")
        options["window"] = min(window, 2**63 - 1)  # as wide as the native int64 holds: it hides nothing either way
    if scale is not None:
        scale = float(scale)
        if not scale > 0:
            raise ValueError(f"{op}: argument 'scale' expected a positive number, got {scale!r}")
        options["scale"] = scale
    if key_padding_mask is not None:
        check_tensor(op, "key_padding_mask", key_padding_mask)
        if key_padding_mask.dtype != bool_:
            raise TypeError(
                f"{op}: argument 'key_padding_mask' expected a bool tensor, "
                f"got {key_padding_mask.dtype} (pass lengths as key_lengths)"
            )
        options["key_padding_mask"] = key_padding_mask._array
    if key_lengths is not None:
        check_tensor(op, "key_lengths", key_lengths)
        if key_lengths.dtype not in (int32, int64):
            raise TypeError(f"{op}: argument 'key_lengths' expected an int tensor, got {key_lengths.dtype}")
        options["key_lengths"] = key_lengths._array
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: argument 'dropout_p' expected a probability in [0, 1), got {dropout_p!r}")
    if dropout_p > 0.0:
        seed, offset = _generator_or_default(op, generator).next_stream()
        options.update(dropout_p=float(dropout_p), dropout_seed=seed, dropout_offset=offset)
    return options
