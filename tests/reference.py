"""float64 numpy references for the kernels. Each function takes and returns
float64 arrays and says which formula it evaluates."""

from __future__ import annotations

import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc(x):
    return _erfc(np.asarray(x, np.float64)).astype(np.float64)


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
    dx = rstd * (g - np.mean(g, axis=-1, keepdims=True)
                 - x_hat * np.mean(g * x_hat, axis=-1, keepdims=True))
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


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross-entropy with label smoothing e: per row
    loss = -(1 - e) log p_t - e mean_j log p_j (0 where the target is
    ignore_index), then averaged over the rows not ignored ("mean"; NaN when
    there are none), summed ("sum") or returned per row ("none")."""
    targets = np.asarray(targets)
    kept = targets != ignore_index
    logp = log_softmax(logits)
    rows = np.arange(len(targets))
    losses = -(1 - label_smoothing) * logp[rows, np.where(kept, targets, 0)]
    if label_smoothing:
        losses = losses - label_smoothing * np.mean(logp, axis=-1)
    losses = np.where(kept, losses, 0).astype(logits.dtype)
    if reduction == "none":
        return losses
    total = np.sum(losses)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore"):
        return total / logits.dtype.type(np.count_nonzero(kept))


def cross_entropy_backward(grad, logits, targets, ignore_index=-100, label_smoothing=0.0,
                           reduction="mean"):
    """dlogits = g_r * (softmax(logits) - q) per row, q = (1 - e) onehot + e / V;
    g_r = grad[r] ("none"), grad ("sum"), grad / count ("mean"); 0 on ignored rows."""
    targets = np.asarray(targets)
    kept = targets != ignore_index
    n, vocab = logits.shape
    q = np.zeros_like(logits)
    q[np.arange(n), np.where(kept, targets, 0)] = 1 - label_smoothing
    q += logits.dtype.type(label_smoothing / vocab)
    if reduction == "none":
        g = np.asarray(grad)[:, None]
    elif reduction == "sum":
        g = np.asarray(grad)
    else:
        g = np.asarray(grad) / logits.dtype.type(max(np.count_nonzero(kept), 1))
    return np.where(kept[:, None], (softmax(logits) - q) * g, 0).astype(logits.dtype)
