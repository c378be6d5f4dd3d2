"""Whether ops record a graph for backward: ``no_grad`` / ``enable_grad``,
per thread. Below tensor.py and autograd.py, which both read it."""

from __future__ import annotations

import contextlib
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: ops inside record nothing for backward."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)
