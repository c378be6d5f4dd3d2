"""attnkit's dtypes: ``attnkit.float32`` and friends, and their numpy twins."""

from __future__ import annotations

import numpy as np


class dtype:
    """A tensor element type. Compare with ``==``; ``str(d)`` gives its name."""

    __slots__ = ("name", "itemsize", "is_floating_point", "_numpy")

    def __init__(self, name: str, itemsize: int, is_floating_point: bool, numpy_dtype):
        self.name = name
        self.itemsize = itemsize
        self.is_floating_point = is_floating_point
        self._numpy = None if numpy_dtype is None else np.dtype(numpy_dtype)

    @property
    def numpy_dtype(self):
        """The numpy dtype, or None for bfloat16 (numpy has none)."""
        return self._numpy

    def __repr__(self) -> str:
        return f"attnkit.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))


float32 = dtype("float32", 4, True, np.float32)
float16 = dtype("float16", 2, True, np.float16)
bfloat16 = dtype("bfloat16", 2, True, None)
int32 = dtype("int32", 4, False, np.int32)
int64 = dtype("int64", 8, False, np.int64)
bool_ = dtype("bool", 1, False, np.bool_)
int8 = dtype("int8", 1, False, np.int8)  # quantized weights (attnkit.quantize)

ALL = (float32, float16, bfloat16, int32, int64, bool_, int8)
_BY_NAME = {d.name: d for d in ALL}


def _dtype_by_name(name: str) -> dtype:
    return _BY_NAME[name]


def as_dtype(value, argument: str = "dtype") -> dtype:
    """Accepts an attnkit dtype, its name, or a numpy dtype attnkit has."""
    if isinstance(value, dtype):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        np_dtype = None
    if np_dtype is not None and from_numpy_dtype(np_dtype) is not None:
        return from_numpy_dtype(np_dtype)
    names = ", ".join(d.name for d in ALL)
    raise TypeError(f"{argument}: expected one of {names}, got {value!r}")


def from_numpy_dtype(np_dtype: np.dtype):
    """The attnkit dtype of a numpy dtype, or None."""
    for d in ALL:
        # Compare only real numpy dtypes: numpy reads None as float64.
        if d._numpy is not None and d._numpy == np_dtype:
            return d
    return None


def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Rounds numbers of any real dtype to bfloat16 (nearest, ties to even);
    returns the uint16 bits. Wider than float32 data goes through float32
    rounded to odd: rounding it to nearest first would round twice, and a value
    just above a bfloat16 tie would land on the tie and then go to even."""
    values = np.asarray(values)
    if values.dtype in (np.float32, np.float16):
        return float32_to_bfloat16_bits(values.astype(np.float32))
    return float32_to_bfloat16_bits(_float64_to_float32_round_to_odd(values.astype(np.float64)))


def _float64_to_float32_round_to_odd(values: np.ndarray) -> np.ndarray:
    """float32 rounded toward zero, with the last bit set when inexact. With
    24 bits against bfloat16's 8, a later round-to-nearest is then exact."""
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = values.astype(np.float32)  # beyond FLT_MAX: inf, stepped back below
        bits = nearest.view(np.uint32).copy()
        inexact = nearest.astype(np.float64) != values  # NaN too: harmless, it stays NaN
        # One step toward zero where nearest rounded away from zero (also inf -> FLT_MAX).
        away = np.abs(nearest.astype(np.float64)) > np.abs(values)
    bits[...] = np.where(away, bits - np.uint32(1), bits)
    bits[...] = np.where(inexact, bits | np.uint32(1), bits)
    return bits.view(np.float32)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Rounds float32 to bfloat16 (nearest, ties to even); returns the uint16 bits."""
    bits = np.asarray(values, dtype=np.float32, order="C").view(np.uint32)  # keeps 0-d arrays 0-d
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    # NaN must stay NaN (rounding could carry its payload into the exponent).
    nan = np.isnan(values)
    rounded = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded)
    return rounded.astype(np.uint16)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widens bfloat16 bits (uint16) to float32 exactly."""
    widened = np.asarray(bits, dtype=np.uint16).astype(np.uint32)
    widened <<= np.uint32(16)  # in place: a 0-d array stays an array (a << b would give a scalar)
    return widened.view(np.float32)
