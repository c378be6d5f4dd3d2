"""Argument checks shared by the functional ops."""

from __future__ import annotations

from ...tensor import Tensor


def check_tensor(op: str, argument: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(value).__name__}")
