"""float64 references: matrix products and linear."""

from __future__ import annotations

import numpy as np

# ---- gemm ---------------------------------------------------------------


def matmul(a, b):
    """float64 product of float64 copies of the operands."""
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def matmul_naive_float32(a, b):
    """The same product summed plainly in float32: one k at a time, a rounded
    multiply and a rounded add (no FMA, no blocking). The yardstick for the
    accuracy of a reordered float32 GEMM."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    out = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), np.float32)
    for p in range(a.shape[-1]):
        out += a[..., :, p : p + 1] * b[..., p : p + 1, :]
    return out


def linear_backward(x, weight, grad_out):
    """Gradients of y = x @ weight.T + bias: (dx, dweight, dbias), float64."""
    x = np.asarray(x, np.float64).reshape(-1, weight.shape[1])
    g = np.asarray(grad_out, np.float64).reshape(-1, weight.shape[0])
    w = np.asarray(weight, np.float64)
    return g @ w, g.T @ x, g.sum(axis=0)
