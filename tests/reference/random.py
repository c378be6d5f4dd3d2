"""float64 references: Philox 4x32-10 and attnkit's streams; dropout."""

from __future__ import annotations

import numpy as np

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
        c = [
            (product1 >> np.uint64(32)) ^ c[1] ^ k0,
            product1 & _MASK32,
            (product0 >> np.uint64(32)) ^ c[3] ^ k1,
            product0 & _MASK32,
        ]
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
    counters = np.stack(
        [
            block & _MASK32,
            block >> np.uint64(32),
            np.full(n, offset & 0xFFFFFFFF, np.uint64),
            np.full(n, offset >> 32, np.uint64),
        ],
        axis=1,
    )
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
