"""Finite differences: how every backward reference is checked."""

from __future__ import annotations

import numpy as np


def central_differences(arrays: dict, loss, step: float = 1e-6) -> dict:
    """name -> the gradient of ``loss()`` with respect to each float64 array
    of ``arrays`` (name -> array), by central differences: each entry is
    moved by +-step in place, ``loss()`` (which reads the arrays) evaluated,
    and the entry restored."""
    gradients = {}
    for name, array in arrays.items():
        gradient = np.empty_like(array)
        for position in np.ndindex(array.shape):
            original = array[position]
            array[position] = original + step
            up = loss()
            array[position] = original - step
            down = loss()
            array[position] = original
            gradient[position] = (up - down) / (2 * step)
        gradients[name] = gradient
    return gradients


def gradient_of_weighted_sum(function, x, upstream, step: float = 1e-6) -> np.ndarray:
    """d sum(upstream * function(x)) / dx (x a float64 array), by
    ``central_differences``: the gradient a backward given ``upstream``
    computes."""
    x = np.array(x, dtype=np.float64)  # a copy to perturb (a 0-d array for a number)
    return central_differences({"x": x}, lambda: float(np.sum(upstream * function(x))), step)["x"]


def elementwise_derivative(function, x, step: float) -> np.ndarray:
    """f'(x) at every point of x for an elementwise ``function``, all points
    at once: each output entry depends on its own input only, so the central
    difference of every point is one pair of calls (and no sum over the other
    points adds its rounding to a derivative that may be tiny)."""
    return (function(x + step) - function(x - step)) / (2 * step)
