"""Mixed precision: ``attnkit.autocast(dtype=attnkit.bfloat16)``.

Inside the context, the matrix products of ``F.linear`` and ``F.matmul`` take
float32 tensors, round them to bfloat16 (nearest, ties to even) and multiply
them on the bf16 GEMM (float32 sums), with a float32 result; their backward
products do the same with the incoming gradient. Everything else (norms,
softmax, attention, losses, the optimizer) stays float32, as in PyTorch's
CPU autocast lists. The weights stay float32 masters and their gradients come
back float32; no model code changes.

The policy is thread-local, read in one place per op (``autocast_dtype``), and
autocast regions nest: an inner ``autocast(enabled=False)`` turns it off.
"""

from __future__ import annotations

import contextlib
import threading

from ._dtypes import as_dtype, bfloat16

_state = threading.local()


def autocast_dtype():
    """The dtype products run in on this thread now: bfloat16 inside an
    enabled ``autocast``, else None (float32)."""
    return getattr(_state, "dtype", None)


@contextlib.contextmanager
def autocast(dtype=bfloat16, enabled: bool = True):
    """Runs the matrix products inside in ``dtype`` (only ``attnkit.bfloat16``
    on the CPU) with float32 results; see the module's docstring."""
    dtype = as_dtype(dtype, "autocast")
    if dtype != bfloat16:
        raise ValueError(
            f"autocast: argument 'dtype' expected attnkit.bfloat16 (the CPU's autocast dtype), got {dtype}"
        )
    if not isinstance(enabled, bool):
        raise TypeError(f"autocast: argument 'enabled' expected a bool, got {type(enabled).__name__}")
    previous = autocast_dtype()
    _state.dtype = dtype if enabled else None
    try:
        yield
    finally:
        _state.dtype = previous
