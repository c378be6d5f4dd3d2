"""float64 references: LayerNorm and RMSNorm."""

from __future__ import annotations

import numpy as np


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd): y = (x - mean) * rstd * weight + bias over the last axis,
    rstd = 1 / sqrt(var + eps) with the biased variance (two passes)."""
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean[..., 0], rstd[..., 0]


def layer_norm_backward(dy, x, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of layer_norm, with g = dy * weight and x_hat the
    normalized x: dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),
    dweight = sum over rows of dy * x_hat, dbias = sum over rows of dy."""
    _, mean, rstd = layer_norm(x, eps=eps)
    rstd = rstd[..., None]
    x_hat = (x - mean[..., None]) * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - np.mean(g, axis=-1, keepdims=True) - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
    rows = dy.reshape(-1, dy.shape[-1])
    return dx, np.sum((dy * x_hat).reshape(rows.shape), axis=0), np.sum(rows, axis=0)


def rms_norm(x, weight=None, eps=float(np.finfo(np.float32).eps)):
    """(y, rstd): y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps)."""
    rstd = 1 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + x.dtype.type(eps))
    y = x * rstd
    if weight is not None:
        y = y * weight
    return y, rstd[..., 0]


def rms_norm_backward(dy, x, weight=None, eps=float(np.finfo(np.float32).eps)):
    """(dx, dweight): dx = rstd * (g - x_hat * mean(g * x_hat)), g = dy * weight,
    x_hat = x * rstd; dweight = sum over rows of dy * x_hat."""
    _, rstd = rms_norm(x, eps=eps)
    rstd = rstd[..., None]
    x_hat = x * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
    return dx, np.sum((dy * x_hat).reshape(-1, dy.shape[-1]), axis=0)
