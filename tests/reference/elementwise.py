"""float64 references: arithmetic, reductions, selections and casts."""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------- elementwise ---
# Arithmetic, reductions and selections in float64. The gradient of a
# broadcast operand is the output's gradient summed over the dimensions the
# operand was broadcast along (sum_to_shape).

_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def binary(a, b, op):
    """a op b with numpy broadcasting (x / 0 gives +-inf or NaN, as IEEE)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _BINARY[op](np.asarray(a, np.float64), np.asarray(b, np.float64))


def sum_to_shape(x, shape):
    """x summed over the leading dimensions `shape` lacks and over those where
    `shape` has 1 and x does not: the inverse of broadcasting `shape` to x."""
    x = np.asarray(x, np.float64)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(shape) if size == 1 and x.shape[lead + i] != 1)
    return x.sum(axis=axes).reshape(shape)


def binary_terms(grad, a, b, op):
    """The elementwise gradient terms of sum(grad * (a op b)) for a and b, in
    the output's (broadcast) shape, before sum_to_shape:
    add (g, g), sub (g, -g), mul (g b, g a), div (g / b, -g a / b^2)."""
    g, a, b = (np.asarray(v, np.float64) for v in (grad, a, b))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = {"add": (g, g), "sub": (g, -g), "mul": (g * b, g * a), "div": (g / b, -g * a / (b * b))}[op]
    return tuple(np.broadcast_to(t, g.shape) for t in terms)


def binary_backward(grad, a, b, op):
    """(d/da, d/db) of sum(grad * (a op b)), each with its operand's shape."""
    da, db = binary_terms(grad, a, b, op)
    return sum_to_shape(da, np.shape(a)), sum_to_shape(db, np.shape(b))


def reduce_sum(x, dims, keepdim=False):
    return np.sum(np.asarray(x, np.float64), axis=tuple(dims), keepdims=keepdim)


def reduce_mean(x, dims, keepdim=False):
    x = np.asarray(x, np.float64)
    count = math.prod(x.shape[d] for d in {d % x.ndim for d in dims}) if x.ndim else 1
    with np.errstate(invalid="ignore"):
        return reduce_sum(x, dims, keepdim) / count


def max_last_dim(x):
    """(values, indices) of the max over the last dimension: the first index
    where it occurs, NaN counting as larger than every number."""
    x = np.asarray(x, np.float64)
    nan = np.isnan(x)
    has_nan = nan.any(axis=-1)
    values = np.where(has_nan, np.nan, np.max(np.where(nan, -np.inf, x), axis=-1))
    indices = np.where(has_nan, np.argmax(nan, axis=-1), np.argmax(np.where(nan, -np.inf, x), axis=-1))
    return values, indices


def where_backward(grad, condition, a_shape, b_shape):
    """(d/da, d/db) of sum(grad * where(condition, a, b))."""
    g = np.asarray(grad, np.float64)
    condition = np.broadcast_to(condition, g.shape)
    return (sum_to_shape(np.where(condition, g, 0.0), a_shape), sum_to_shape(np.where(condition, 0.0, g), b_shape))


def cast_float_to_integer(x, dtype):
    """The native float -> integer rule: truncate toward zero, saturate at the
    type's limits, NaN -> 0."""
    info = np.iinfo(dtype)
    limit = 2.0 ** (info.bits - 1)

    def convert(value):
        if math.isnan(value):
            return 0
        if value >= limit:
            return int(info.max)
        if value < -limit:
            return int(info.min)
        return int(value)  # int() truncates toward zero

    return np.array([convert(float(v)) for v in np.ravel(x)], dtype).reshape(np.shape(x))
