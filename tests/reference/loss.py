"""float64 references: cross-entropy."""

from __future__ import annotations

import numpy as np

from .softmax import log_softmax, softmax


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


def cross_entropy_backward(grad, logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
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
