"""float64 references: data movement: narrow, index_select, gather."""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------- shape ---
# Data movement in numpy; exact, so the dtype is kept. Gradients in float64.


def narrow_backward(grad, input_shape, dim, start):
    out = np.zeros(input_shape, np.float64)
    index = [slice(None)] * len(input_shape)
    index[dim] = slice(start, start + np.shape(grad)[dim])
    out[tuple(index)] = grad
    return out


def index_select(x, dim, index):
    return np.take(x, np.asarray(index).reshape(-1), axis=dim)


def index_select_backward(grad, input_shape, dim, index):
    """Slices of grad added back to the rows index names along dim."""
    out = np.zeros(input_shape, np.float64)
    g = np.moveaxis(np.asarray(grad, np.float64), dim, 0)
    target = np.moveaxis(out, dim, 0)  # a view: writes land in out
    for j, i in enumerate(np.asarray(index).reshape(-1)):
        target[i] += g[j]
    return out


def _gather_coordinates(index, dim):
    """For every element of index, its coordinates in x: its own, with the
    coordinate along dim replaced by its value."""
    coordinates = list(np.indices(np.shape(index)))
    coordinates[dim] = np.asarray(index)
    return tuple(coordinates)


def gather(x, dim, index):
    return np.asarray(x)[_gather_coordinates(index, dim)]


def gather_backward(grad, input_shape, dim, index):
    out = np.zeros(input_shape, np.float64)
    np.add.at(out, _gather_coordinates(index, dim), np.asarray(grad, np.float64))
    return out
