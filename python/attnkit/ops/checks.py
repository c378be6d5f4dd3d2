"""Argument checks shared by the functional ops."""

from __future__ import annotations

import numbers

from ..tensor import Tensor


def check_tensor(op: str, argument: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(value).__name__}")


def check_int64(op: str, argument: str, values) -> None:
    """Integers go to the native layer as int64: one beyond it cannot even be
    passed (pybind11 would say only "incompatible function arguments"), so it
    is refused here by name. ``values``: an int or a sequence of ints."""
    for value in values if isinstance(values, (list, tuple)) else (values,):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{op}: argument '{argument}' expected integers in [-2**63, 2**63), got {value}")


def positive_int(op: str, argument: str, value, allow_zero: bool = False) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value < 2**63:  # sizes are int64 in the native layer
        raise ValueError(
            f"{op}: argument '{argument}' expected an integer in [{0 if allow_zero else 1}, 2**63), got {value}"
        )
    return int(value)


def flag(op: str, argument: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected a bool, got {type(value).__name__}")
    return value


def normalized_shape(op: str, normalized_shape) -> tuple:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    try:
        shape = tuple(normalized_shape)
    except TypeError:
        shape = None
    if not shape or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and 1 <= d < 2**63 for d in shape
    ):
        raise ValueError(
            f"{op}: argument 'normalized_shape' expected a positive int below 2**63 or a tuple of them, "
            f"got {normalized_shape!r}"
        )
    return tuple(int(d) for d in shape)


def eps(op: str, eps) -> float:
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool):
        raise TypeError(f"{op}: argument 'eps' expected a float, got {type(eps).__name__}")
    if not eps >= 0:
        raise ValueError(f"{op}: argument 'eps' expected a non-negative number, got {eps}")
    return float(eps)
