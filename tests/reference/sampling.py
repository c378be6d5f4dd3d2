"""float64 references: the sampling filters (temperature, top-k, top-p, repetition penalty)."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- sampling --


def filtered_probabilities(logits, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0, seen=None):
    """float64 probabilities of the next token for each row of logits [B, V]
    after the repetition penalty (CTRL: a seen token's positive logit divided
    by the penalty, a negative one multiplied), temperature, top-k and top-p
    (the smallest set of most probable tokens reaching p; among equal
    probabilities the lower id first), renormalized. temperature 0: one-hot
    on the argmax (the lower id among equals)."""
    z = np.array(logits, np.float64)
    if seen is not None and repetition_penalty != 1.0:
        z = np.where(seen, np.where(z > 0, z / repetition_penalty, z * repetition_penalty), z)
    out = np.zeros_like(z)
    for b, row in enumerate(z):
        if temperature == 0:
            out[b, np.argmax(row)] = 1.0
            continue
        # most probable first, the lower id first among equals
        order = np.lexsort((np.arange(row.size), -row))
        order = order[np.isfinite(row[order])]
        if top_k is not None:
            order = order[:top_k]
        weights = np.exp((row[order] - row[order].max()) / temperature)
        p = weights / weights.sum()
        if top_p is not None:
            kept = int(np.searchsorted(np.cumsum(p), top_p)) + 1  # the first prefix whose sum reaches top_p
            order, p = order[:kept], p[:kept] / p[:kept].sum()
        out[b, order] = p
    return out
