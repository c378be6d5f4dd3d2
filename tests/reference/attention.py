"""float64 references: attention (visibility, probabilities, forward, backward, dropout)."""

from __future__ import annotations

import numpy as np

from .random import dropout_keep_mask

# ---- attention ----------------------------------------------------------


def attention_visibility(batch, tq, tk, causal=False, window=None, key_lengths=None, key_padding_mask=None):
    """bool [B, 1, Tq, Tk]: which key each query may see (query i at position i + Tk - Tq)."""
    position = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    visible = np.ones((batch, 1, tq, tk), bool)
    if causal:
        visible = visible & (j <= position)
    if window is not None:
        visible = visible & (np.abs(position - j) < window)
    if key_lengths is not None:
        visible = visible & (j[None, None] < np.asarray(key_lengths)[:, None, None, None])
    if key_padding_mask is not None:
        visible = visible & ~np.asarray(key_padding_mask)[:, None, None, :]
    return visible


def attention_probabilities(q, k, visible, scale=None):
    """float64 softmax(scale q k^T) over visible keys, [B, H, Tq, Tk]; rows with
    no visible key are all zero. k has kv_heads heads, repeated per group."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    group = q.shape[2] // k.shape[2]
    k = np.repeat(k, group, axis=2)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bihd,bjhd->bhij", q, k) * scale
    s = np.where(visible, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(visible, np.exp(s - row_max), 0.0)
    total = p.sum(axis=-1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 0.0)


def attention(q, k, v, scale=None, dropout=None, **mask):
    """float64 attention output [B, Tq, H, D]; masked keys never touch the
    result. dropout: [B, H, Tq, Tk] multipliers on the normalized weights
    (0 where dropped, 1/(1-p) where kept), or None."""
    q = np.asarray(q, np.float64)
    v = np.where(np.isfinite(v), v, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else v
    visible = attention_visibility(q.shape[0], q.shape[1], np.shape(k)[1], **mask)
    k = np.where(np.isfinite(k), k, 0.0) if "key_padding_mask" in mask or "key_lengths" in mask else k
    p = attention_probabilities(q, k, visible, scale)
    if dropout is not None:
        p = p * dropout
    group = q.shape[2] // np.shape(v)[2]
    return np.einsum("bhij,bjhd->bihd", p, np.repeat(np.asarray(v, np.float64), group, axis=2))


def attention_dropout_multipliers(shape, p, seed, offset):
    """[B, H, Tq, Tk] multipliers of attention dropout: element (b, h, i, j) is
    number ((b H + h) Tq + i) Tk + j of the stream (seed, offset)."""
    keep = dropout_keep_mask(int(np.prod(shape)), p, seed, offset).reshape(shape)
    return np.where(keep, 1.0 / (1.0 - p), 0.0)


def attention_backward(q, k, v, grad_out, scale=None, dropout=None, **mask):
    """float64 (dq, dk, dv) of attention, from the softmax Jacobian:
    dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
    dK = scale dS^T Q; with grouped K/V the gradients of a group are summed.
    With dropout multipliers M: dV = (P M)^T dO and dP = (dO V^T) M."""
    q, k, v, g = (np.asarray(x, np.float64) for x in (q, k, v, grad_out))
    batch, tq, heads, d = q.shape
    tk, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    scale = 1 / np.sqrt(d) if scale is None else scale
    visible = attention_visibility(batch, tq, tk, **mask)
    p = attention_probabilities(q, k, visible, scale)
    k_full = np.repeat(k, group, axis=2)
    v_full = np.repeat(v, group, axis=2)
    m = np.ones_like(p) if dropout is None else dropout
    dv_full = np.einsum("bhij,bihd->bjhd", p * m, g)
    dp = np.einsum("bihd,bjhd->bhij", g, v_full) * m
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = scale * np.einsum("bhij,bjhd->bihd", ds, k_full)
    dk_full = scale * np.einsum("bhij,bihd->bjhd", ds, q)

    def fold(x):
        return x.reshape(batch, tk, kv_heads, group, d).sum(axis=3)

    return dq, fold(dk_full), fold(dv_full)
