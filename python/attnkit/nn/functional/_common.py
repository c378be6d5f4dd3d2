"""Argument checks shared by the functional ops."""

from __future__ import annotations

from ...tensor import Tensor


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
