"""Times every call into attnkit's native module ``attnkit._C``, however the
product code reaches the kernels.

    python bench/kernel_timer.py SCRIPT [ARGS...]   # runs SCRIPT with the timer installed

``install()`` puts a finder on ``sys.meta_path`` that wraps each function of
``attnkit._C`` in a timer the moment the extension is loaded, before any other
attnkit module reads it. Whatever the product code then does, ``_C.name(...)``,
``from .._C import name``, a table of kernels built at import, ``getattr(_C,
"name")``, it reaches the wrapper. (Methods of ``_C.Array``, such as reshape,
are not wrapped: they do no arithmetic and count as Python time.)

The wrappers cost a fraction of a microsecond on every native call of the
process, timed or not, so the timer runs in a process of its own: the bench
scripts start it as a separate worker, and never report that worker's wall
time as a benchmark figure. While a ``KernelTimer`` is active, the wrappers add
each call's seconds to it; ``wrapper_seconds_per_call`` is the wrappers' own
cost, measured on a no-op, so that ``python_seconds(wall)`` takes it out of the
Python time rather than blaming it on the library.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import runpy
import sys
import time
import types

NATIVE_MODULE = "attnkit._C"

_active: list = []  # the timers recording now; the innermost last
_wrapped: dict = {}  # name -> the original function, once the module is wrapped


def _timed(name: str, fn):
    clock = time.perf_counter

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        if not _active:
            return fn(*args, **kwargs)
        timer = _active[-1]
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            timer._record(name, clock() - start)

    return timed


def _wrap_module(module) -> None:
    for name, value in list(vars(module).items()):
        if isinstance(value, types.BuiltinFunctionType):
            _wrapped[name] = value
            setattr(module, name, _timed(name, value))


class _WrappingLoader(importlib.abc.Loader):
    """Loads the module as its own loader does, then wraps its functions."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        _wrap_module(module)


class _NativeModuleFinder(importlib.abc.MetaPathFinder):
    """Finds attnkit._C through the other finders, with a wrapping loader."""

    def find_spec(self, name, path, target=None):
        if name != NATIVE_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _WrappingLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Wraps attnkit._C's functions when it is imported. Must run before
    ``import attnkit``."""
    if NATIVE_MODULE in sys.modules:
        raise RuntimeError("kernel_timer.install() must run before attnkit is imported")
    if not any(isinstance(finder, _NativeModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NativeModuleFinder())


def installed() -> bool:
    """Whether attnkit._C was loaded with its functions wrapped."""
    return bool(_wrapped)


def _wrapper_cost(count: int = 20000) -> float:
    """Seconds a wrapped call costs beyond the bare call, per call, while a
    timer records: the wrapper's frame, the two clock reads and the
    bookkeeping, part of which lands inside the measured interval and part
    outside."""
    bare = len
    wrapped = _timed("len", bare)
    scratch = KernelTimer.__new__(KernelTimer)
    scratch.seconds, scratch.calls = {}, {}
    argument = ()
    best_bare = best_wrapped = float("inf")
    _active.append(scratch)
    try:
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(count):
                bare(argument)
            best_bare = min(best_bare, time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(count):
                wrapped(argument)
            best_wrapped = min(best_wrapped, time.perf_counter() - start)
    finally:
        _active.remove(scratch)
    return max(best_wrapped - best_bare, 0.0) / count


class KernelTimer:
    """Totals of the native calls made while active, by kernel name. Use as a
    context manager around the code to time; afterwards ``seconds`` and
    ``calls`` hold the per-name totals."""

    def __init__(self) -> None:
        if not installed():
            raise RuntimeError(
                "KernelTimer: attnkit._C was loaded without the timer; run under bench/kernel_timer.py "
                "(or call kernel_timer.install() before importing attnkit)"
            )
        self.seconds: dict = {}
        self.calls: dict = {}
        self.wrapper_seconds_per_call = _wrapper_cost()

    def _record(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def __enter__(self) -> KernelTimer:
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.remove(self)

    @property
    def kernel_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def python_seconds(self, wall: float) -> float:
        """``wall`` (of the timed code) less the time inside kernels and less
        the wrappers' own cost: the time Python spent around the kernels."""
        return wall - self.kernel_seconds - self.total_calls * self.wrapper_seconds_per_call

    def breakdown(self, top: int = 0) -> list:
        """(name, seconds, calls), the most expensive first."""
        rows = sorted(((n, s, self.calls[n]) for n, s in self.seconds.items()), key=lambda r: -r[1])
        return rows[:top] if top else rows


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(f"usage: python {sys.argv[0]} SCRIPT [ARGS...]")
    # This file runs as __main__; the script imports it as kernel_timer, a
    # second module object. Install through that one, so that the script's
    # KernelTimer sees the wrappers.
    import kernel_timer

    kernel_timer.install()
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` would
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
