"""Process-wide settings: threads, the CPU kernel family, memory, build facts."""

from __future__ import annotations

import numbers

from . import _C

MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Sets how many threads attnkit's kernels use (1 to 1024)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"set_num_threads: argument 'n' expected an int, got {type(n).__name__}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_num_threads: argument 'n' expected an integer from 1 to {MAX_THREADS}, got {n}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    return _C.get_num_threads()


def cpu_isa() -> str:
    """The CPU kernel family in use: 'generic', 'avx2', 'avx512', 'avx512_vnni',
    'avx512_bf16' or 'amx'."""
    return _C.cpu_isa()


def cpu_features() -> list:
    """The instruction-set features this CPU and its OS let attnkit use, of
    avx2, avx512, avx512_vnni, avx_vnni, avx512_bf16, amx_tile, amx_bf16 and
    amx_int8 (amx_* only once Linux granted this process the tile state)."""
    return list(_C.cpu_features())


def supported_cpu_isas() -> list:
    """Kernel families this build has and this CPU can run, best last."""
    return list(_C.supported_cpu_isas())


def cpu_memory_stats() -> dict:
    """Bytes handed out and bytes held for reuse by the CPU caching allocator."""
    return dict(_C.cpu_memory_stats())


def empty_cpu_cache() -> None:
    """Returns the memory the CPU allocator holds for reuse to the system."""
    _C.cpu_empty_cache()


def build_info() -> dict:
    """Version, build type, compiler, compiled ISAs and CUDA status of this build."""
    return dict(_C.build_info())
