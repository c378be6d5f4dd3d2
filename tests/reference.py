"""float64 numpy references for the kernels. Each function takes and returns
float64 arrays and says which formula it evaluates."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    return _erfc(np.asarray(x, np.float64)).astype(np.float64)


# ---------------------------------------------------------------- random ---
# Philox 4x32-10 (Salmon et al., SC'11) and attnkit's streams over it, in
# numpy uint64 arithmetic (every 32x32-bit product fits in 64 bits).

PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, key):
    """Philox 4x32-10 of counters [n, 4] (uint32 words) under key (k0, k1):
    returns [n, 4] uint32."""
    c = [np.asarray(counters, np.uint64)[:, w].copy() for w in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    m0, m1 = np.uint64(PHILOX_MULTIPLIERS[0]), np.uint64(PHILOX_MULTIPLIERS[1])
    for _ in range(10):
        product0 = m0 * c[0]
        product1 = m1 * c[2]
        c = [(product1 >> np.uint64(32)) ^ c[1] ^ k0, product1 & _MASK32,
             (product0 >> np.uint64(32)) ^ c[3] ^ k1, product0 & _MASK32]
        k0 = (k0 + np.uint64(PHILOX_WEYL[0])) & _MASK32
        k1 = (k1 + np.uint64(PHILOX_WEYL[1])) & _MASK32
    return np.stack(c, axis=1).astype(np.uint32)


def philox_stream(n, seed, offset):
    """The first n numbers (uint32) of attnkit's stream (seed, offset): element
    i is word (i // 16) % 4 of the block with counter (low, high word of
    b = 16 (i // 64) + i % 16, low, high word of offset), keyed by the seed."""
    i = np.arange(n, dtype=np.uint64)
    block = np.uint64(16) * (i // np.uint64(64)) + i % np.uint64(16)
    word = ((i // np.uint64(16)) % np.uint64(4)).astype(np.int64)
    counters = np.stack([block & _MASK32, block >> np.uint64(32),
                         np.full(n, offset & 0xFFFFFFFF, np.uint64),
                         np.full(n, offset >> 32, np.uint64)], axis=1)
    blocks = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32))
    return blocks[np.arange(n), word]


def dropout_keep_mask(n, p, seed, offset):
    """Element i is kept when its number is at least round(p * 2^32)."""
    return philox_stream(n, seed, offset).astype(np.int64) >= round(p * 2.0**32)


def dropout(x, p, seed, offset):
    """y = x / (1 - p) where kept, else 0 (float64)."""
    x = np.asarray(x, np.float64)
    keep = dropout_keep_mask(x.size, p, seed, offset).reshape(x.shape)
    return np.where(keep, x / (1.0 - p), 0.0)


def dropout_backward(dy, p, seed, offset):
    """dL/dx of dropout: the same mask and scale applied to dy."""
    return dropout(dy, p, seed, offset)


# ------------------------------------------------------------- embedding ---

def embedding(ids, weight):
    """out[..., :] = weight[ids[...], :]."""
    return np.asarray(weight, np.float64)[np.asarray(ids)]


def embedding_backward(dout, ids, num_embeddings):
    """dweight[v] = sum of dout[n] over the positions n with ids[n] == v."""
    ids = np.asarray(ids).reshape(-1)
    dout = np.asarray(dout, np.float64)
    dweight = np.zeros((num_embeddings, dout.shape[-1]))
    np.add.at(dweight, ids, dout.reshape(ids.size, -1))
    return dweight


# -------------------------------------------------------------- position ---
# Frequencies and sin/cos through Python's math module (the C library's pow,
# sin and cos, as the kernels use): the float64 angles are then the very ones
# the kernels compute.

def _inverse_frequencies(base, pairs, dim):
    return np.array([math.pow(base, -(2 * i) / dim) for i in range(pairs)])


def sinusoidal_position_encoding(length, dim, offset=0):
    """table[t, j] = sin(p w_i) (even j) or cos(p w_i) (odd j), p = offset + t,
    i = j // 2, w_i = 10000^(-2i/dim) (Vaswani et al. 2017, section 3.5)."""
    frequencies = _inverse_frequencies(10000.0, (dim + 1) // 2, dim)
    table = np.empty((length, dim))
    for t in range(length):
        position = float(offset + t)
        for j in range(dim):
            angle = position * frequencies[j // 2]
            table[t, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


def rope_angles(T, D, offset, base):
    """theta[t, i] = (offset + t) * base^(-2i/D), [T, D/2]."""
    positions = np.arange(offset, offset + T, dtype=np.float64)
    return positions[:, None] * _inverse_frequencies(base, D // 2, D)[None, :]


def _rope_pairs(x, interleaved):
    """Views (a, b) of the pairs of x [B, T, H, D], each [B, T, H, D/2]."""
    half = x.shape[-1] // 2
    if interleaved:
        return x[..., 0::2], x[..., 1::2]
    return x[..., :half], x[..., half:]


def _rope_join(first, second, interleaved):
    if interleaved:
        return np.stack([first, second], axis=-1).reshape(first.shape[:-1] + (2 * first.shape[-1],))
    return np.concatenate([first, second], axis=-1)


def rope(x, offset, base, interleaved):
    """Rotates pair i of row t by theta[t, i]: (a, b) -> (a c - b s, a s + b c);
    pairs are (x[2i], x[2i+1]) when interleaved, else (x[i], x[i + D/2])."""
    x = np.asarray(x, np.float64)
    theta = rope_angles(x.shape[1], x.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(x, interleaved)
    return _rope_join(a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_backward(dy, offset, base, interleaved):
    """dL/dx = R^T dy: the rotation by -theta."""
    dy = np.asarray(dy, np.float64)
    theta = rope_angles(dy.shape[1], dy.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(dy, interleaved)
    return _rope_join(a * np.cos(theta) + b * np.sin(theta), -a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_term_magnitudes(x, offset, base, interleaved):
    """|a c| + |b s| and |a s| + |b c| in the output's layout: the size of the
    two terms each output is a sum or difference of."""
    x = np.asarray(x, np.float64)
    theta = rope_angles(x.shape[1], x.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(np.abs(x), interleaved)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return _rope_join(a * c + b * s, a * s + b * c, interleaved)


# ----------------------------------------------------------------- optim ---

def adamw(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """torch.optim.AdamW's update (its single-tensor path, step by step) in
    float64; returns the new (param, exp_avg, exp_avg_sq)."""
    p, g, m, v = (np.asarray(a, np.float64) for a in (param, grad, exp_avg, exp_avg_sq))
    if decay:
        p = p * (1 - lr * weight_decay)            # param.mul_(1 - lr * weight_decay)
    m = m + (1 - beta1) * (g - m)                  # exp_avg.lerp_(grad, 1 - beta1)
    v = v * beta2 + (1 - beta2) * g * g            # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + eps
    p = p - step_size * m / denom                  # param.addcdiv_(exp_avg, denom, value=-step_size)
    return p, m, v


def adamw_term_magnitudes(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps,
                          weight_decay, decay=True):
    """The size of the terms each output of the update is a sum or difference
    of: |m| + (1 - beta1) (|g| + |m|) for the new m, the new v itself (a sum
    of non-negative terms), and |p * decay| + step_size * (m's terms) / denom
    for the new p."""
    p, g, m, v = (np.abs(np.asarray(a, np.float64)) for a in (param, grad, exp_avg, exp_avg_sq))
    decay_factor = abs(1 - lr * weight_decay) if decay else 1.0
    m_terms = m + (1 - beta1) * (g + m)
    v_new = v * beta2 + (1 - beta2) * g * g
    denom = np.sqrt(v_new) / math.sqrt(1 - beta2**step) + eps
    p_terms = p * decay_factor + lr / (1 - beta1**step) * m_terms / denom
    return p_terms, m_terms, v_new


def global_norm(arrays):
    """sqrt of the sum of squares of every element of every array."""
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))
