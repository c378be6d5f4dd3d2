"""Reading and writing a tensor's memory from Python, for the modules,
optimizers, initializers and checkpoints: bitwise copies, clones, and filling
from float64 values with one rounding to the tensor's dtype.

Outside tensor.py, the autograd and the ops (``ops/``, ``nn/functional/``,
``optim/functional.py``), this module is the one way to a tensor's native
array (``native_array``, ``from_native``, ``set_memory``): the others build
tensors with the public constructors (``attnkit.zeros``, ``from_numpy``, ...)."""

from __future__ import annotations

import numpy as np

from . import _dtypes
from ._dtypes import bfloat16
from .tensor import Tensor


def raw_bytes(tensor) -> np.ndarray:
    """A writable uint8 view of the tensor's memory (row-major, native byte
    order). bfloat16 is read through its 16-bit pattern (numpy has no bfloat16)."""
    array = tensor._array
    if array.dtype == "bfloat16":
        array = array.view_as_dtype("float16")
    return np.asarray(array).reshape(-1).view(np.uint8)


def values_view(tensor) -> np.ndarray:
    """A writable numpy view of a tensor's values; of a bfloat16 tensor, its
    bits (uint16: numpy has no bfloat16), which copy exactly."""
    array = tensor._array
    if array.dtype == "bfloat16":
        return np.asarray(array.view_as_dtype("float16")).view(np.uint16)
    return np.asarray(array)


def float64_values(tensor) -> np.ndarray:
    """The tensor's values as a new float64 array (bfloat16 widened exactly)."""
    if tensor.dtype == bfloat16:
        bits = raw_bytes(tensor).view(np.uint16).reshape(tensor.shape)
        return _dtypes.bfloat16_bits_to_float32(bits).astype(np.float64)
    return np.asarray(tensor._array).astype(np.float64)


def fill_from_values(tensor, values: np.ndarray) -> None:
    """Writes ``values`` (any real dtype, the tensor's shape) into the tensor,
    rounded once to its dtype (to nearest, ties to even)."""
    values = np.asarray(values)
    if tensor.dtype == bfloat16:
        raw_bytes(tensor).view(np.uint16)[...] = _dtypes.to_bfloat16_bits(values).reshape(-1)
    else:
        np.asarray(tensor._array)[...] = values


def copy_into(destination, source) -> None:
    """Copies ``source``'s values into ``destination`` (same shape): bit for
    bit when the dtypes agree, else converted with one rounding."""
    if destination.dtype == source.dtype:
        raw_bytes(destination)[...] = raw_bytes(source)
    elif destination.dtype.is_floating_point or not source.dtype.is_floating_point:
        fill_from_values(
            destination, float64_values(source) if source.dtype.is_floating_point else np.asarray(source._array)
        )
    else:
        # float -> integer: truncation toward zero, as a cast in C and PyTorch
        np.asarray(destination._array)[...] = np.trunc(float64_values(source))


def clone_array(tensor):
    """A new native array with the tensor's bytes (own memory)."""
    return tensor._array.copy()


def native_array(tensor):
    """The tensor's native array (attnkit._C.Array), for a kernel call."""
    return tensor._array


def from_native(array) -> Tensor:
    """A tensor (no autograd history) over a native array, sharing its memory."""
    return Tensor._wrap(array)


def set_memory(tensor, source) -> None:
    """Points ``tensor`` at ``source``'s memory (a module's ``to(dtype)``, a
    loader's mapped weights): what holds ``tensor`` sees the new values."""
    tensor._array = source._array
