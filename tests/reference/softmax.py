"""float64 references: softmax and log-softmax."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# softmax, norm, loss. These evaluate their formula in the dtype of their
# inputs: float64 inputs give the reference; float32 inputs give the naive
# float32 computation of the same quantity that assert_reduction_close
# measures a kernel against.
# ---------------------------------------------------------------------------


def _shifted(z):
    """z minus its row max, with rows of only -inf shifted by 0 (not -inf)."""
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), np.zeros_like(m), m)
    return z - m


def softmax(x, scale=1.0):
    """softmax(scale * x) over the last axis; a row of only -inf gives 0."""
    e = np.exp(_shifted(x * x.dtype.type(scale)))
    s = np.sum(e, axis=-1, keepdims=True)
    return e / np.where(s == 0, np.ones_like(s), s)


def log_softmax(x, scale=1.0):
    """log(softmax(scale * x)) = (z - m) - log sum exp(z - m), z = scale * x;
    a row of only -inf gives -inf."""
    d = _shifted(x * x.dtype.type(scale))
    s = np.sum(np.exp(d), axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.where(s == 0, -np.inf, d - np.log(np.where(s == 0, np.ones_like(s), s)))


def softmax_backward(dy, y, scale=1.0):
    """dx = scale * y * (dy - sum(dy * y)) from the output y of softmax."""
    dot = np.sum(dy * y, axis=-1, keepdims=True)
    return y * (dy - dot) * y.dtype.type(scale)


def log_softmax_backward(dy, y, scale=1.0):
    """dx = scale * (dy - exp(y) * sum(dy)) from the output y of log_softmax."""
    return (dy - np.exp(y) * np.sum(dy, axis=-1, keepdims=True)) * y.dtype.type(scale)
