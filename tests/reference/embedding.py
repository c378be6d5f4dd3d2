"""float64 references: embedding lookup and its gradient."""

from __future__ import annotations

import numpy as np

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
