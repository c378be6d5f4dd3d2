"""Argument checks, the Python side of ``csrc/ops/checks.h``. Each raises
TypeError or ValueError with the op, the argument, what was expected and what
came (``op: argument 'x' expected ..., got ...``).

What the native ops check (shapes against each other, dtypes, devices, eps,
probabilities, token ids in range) is checked there, once. Python checks what
cannot reach them intact: the type of a Python value before pybind11 converts
it (which would say only "incompatible function arguments") and integers
beyond int64; and what a layer needs before any op runs (the sizes it
allocates its parameters with).
"""

from __future__ import annotations

import math
import numbers
import os

from ..tensor import Tensor

# Sizes and integers cross into the native layer as int64.
_INT64_LIMIT = 2**63


def check_tensor(op: str, argument: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(value).__name__}")


def check_tensor_sequence(op: str, tensors) -> None:
    """A non-empty list or tuple of tensors (cat, stack)."""
    if isinstance(tensors, Tensor) or not isinstance(tensors, (tuple, list)):
        raise TypeError(
            f"{op}: argument 'tensors' expected a list or tuple of attnkit.Tensor, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ValueError(f"{op}: argument 'tensors' expected at least one tensor, got an empty sequence")
    for i, t in enumerate(tensors):
        check_tensor(op, f"tensors[{i}]", t)


def check_optional_tensor(op: str, argument: str, value) -> None:
    if value is not None:
        check_tensor(op, argument, value)


def check_tensor_of(op: str, argument: str, value, dtypes: tuple, expected: str, *, shape=None, ndim=None) -> None:
    """``value`` is a Tensor of one of ``dtypes`` and, when given, of
    ``shape`` or of ``ndim`` dimensions; ``expected`` says what in words
    ("bool of shape [2, 5]")."""
    check_tensor(op, argument, value)
    if (
        value.dtype not in dtypes
        or (shape is not None and list(value.shape) != list(shape))
        or (ndim is not None and value.ndim != ndim)
    ):
        raise ValueError(
            f"{op}: argument '{argument}' expected {expected}, got {value.dtype} of shape {list(value.shape)}"
        )


def check_int64(op: str, argument: str, values) -> None:
    """Integers go to the native layer as int64: one beyond it cannot even be
    passed (pybind11 would say only "incompatible function arguments"), so it
    is refused here by name. ``values``: an int or a sequence of ints."""
    for value in values if isinstance(values, (list, tuple)) else (values,):
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise ValueError(f"{op}: argument '{argument}' expected integers in [-2**63, 2**63), got {value}")


def is_int(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(op: str, argument: str, value, low: int | None = None) -> int:
    """An int (not a bool) in int64's range, and >= ``low`` when given."""
    if not is_int(value):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{op}: argument '{argument}' expected an integer >= {low}, got {value}")
    check_int64(op, argument, value)
    return int(value)


def positive_int(op: str, argument: str, value, allow_zero: bool = False) -> int:
    """A size: an int in [1, 2**63), or [0, 2**63) with ``allow_zero``."""
    if not is_int(value):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value < _INT64_LIMIT:
        raise ValueError(
            f"{op}: argument '{argument}' expected an integer in [{0 if allow_zero else 1}, 2**63), got {value}"
        )
    return int(value)


def flag(op: str, argument: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected a bool, got {type(value).__name__}")
    return value


def real(op: str, argument: str, value, *, finite: bool = True, low: float | None = None, below=None) -> float:
    """A Python or numpy real number (not a bool) as a float: finite unless
    ``finite=False``, and >= ``low`` (and < ``below``, with ``low``) when given."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected a float, got {type(value).__name__}")
    value = float(value)
    out_of_bounds = (low is not None and not value >= low) or (below is not None and not value < below)
    if (finite and not math.isfinite(value)) or out_of_bounds:
        bound = "" if low is None and below is None else f" >= {low}" if below is None else f" in [{low}, {below})"
        raise ValueError(f"{op}: argument '{argument}' expected a finite number{bound}, got {value}")
    return value


def normalized_shape(op: str, value) -> list:
    """An int or a tuple/list of ints, as a list of sizes in [0, 2**63): the
    trailing dimensions a norm normalizes over (the op checks them against
    x's shape; a module allocates its parameters with them). A sequence,
    not any iterable: iterating a tensor of a huge leading size would build a
    list of billions of tensors."""
    dims = [value] if is_int(value) else list(value) if isinstance(value, (tuple, list)) else None
    if dims is None or not all(is_int(d) for d in dims):
        raise TypeError(f"{op}: argument 'normalized_shape' expected an int or a tuple of ints, got {value!r}")
    if not all(0 <= d < _INT64_LIMIT for d in dims):
        raise ValueError(f"{op}: argument 'normalized_shape' expected sizes in [0, 2**63), got {value!r}")
    return [int(d) for d in dims]


def local_directory(op: str, path) -> str:
    """``path`` (str or os.PathLike) as a str, when it names a local
    directory: attnkit never downloads, so a hub name is refused too."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{op}: argument 'path' expected a directory path, got {type(path).__name__}")
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise ValueError(f"{op}: '{directory}' is not a local directory (attnkit never downloads)")
    return directory
