"""float64 references: sinusoidal encodings and rotary positions."""

from __future__ import annotations

import math

import numpy as np

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


def rope_at(x, positions, frequencies, interleaved):
    """RoPE of x [B, T, H, D] with row (b, t) at positions[b, t] and pair i
    turning at frequencies[i] (any positions and frequencies)."""
    x = np.asarray(x, np.float64)
    theta = (np.asarray(positions, np.float64)[..., None] * np.asarray(frequencies, np.float64))[:, :, None, :]
    a, b = _rope_pairs(x, interleaved)
    return _rope_join(a * np.cos(theta) - b * np.sin(theta), a * np.sin(theta) + b * np.cos(theta), interleaved)


def rope_term_magnitudes(x, offset, base, interleaved):
    """|a c| + |b s| and |a s| + |b c| in the output's layout: the size of the
    two terms each output is a sum or difference of."""
    x = np.asarray(x, np.float64)
    theta = rope_angles(x.shape[1], x.shape[3], offset, base)[None, :, None, :]
    a, b = _rope_pairs(np.abs(x), interleaved)
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    return _rope_join(a * c + b * s, a * s + b * c, interleaved)
