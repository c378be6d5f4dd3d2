"""Shared helpers for the bench scripts.

Every script times attnkit and its peer (PyTorch, when installed) side by side
in one process, at the same thread count, and states each figure as a fraction
of the machine's limit measured in the same run (memory bandwidth for
memory-bound ops, FMA peak for compute-bound ones). Results are printed as a
table and written to ``bench/results/<script>.json``.
"""

from __future__ import annotations

import os

# Several thread pools share two cores in one process here: attnkit's and
# PyTorch's OpenMP teams and numpy's OpenBLAS threads. By default each keeps
# spinning for a while after its call returns, and steals the cores from the
# next library's timed call (measured: 2-thread GEMM spreads of 100-400%).
# Threads that sleep when idle make the side-by-side timings fair. These must
# be set before numpy, torch or attnkit start their threads, so every bench
# script imports this module first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # OpenBLAS spins 2^4 cycles at most

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import attnkit
from attnkit import _C
from attnkit.benchmarks import cpu_model, timed_rounds

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1 << 20


# ------------------------------------------------------------------ options --
def argument_parser(description: str, timed: bool = True) -> argparse.ArgumentParser:
    """The options every bench script shares (``timed``: those of scripts that
    time ops against a peer); scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to run at (default: 1 2)")
    parser.add_argument(
        "--probe-mib",
        type=int,
        default=512,
        help="memory-bandwidth probe footprint in MiB; far above the L3 (default: 512)",
    )
    if timed:
        parser.add_argument(
            "--repeats", type=int, default=10, help="timed calls per measurement; the median is reported (default: 10)"
        )
        parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: 2)")
        parser.add_argument("--no-torch", action="store_true", help="do not compare against PyTorch")
    return parser


# ------------------------------------------------------------------- timing --
@dataclass
class Timing:
    """Seconds per call over ``repeats`` timed calls."""

    median: float
    low: float
    high: float
    repeats: int

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how much to trust the median."""
        return (self.high - self.low) / self.median


def time_callable(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 10) -> Timing:
    """Calls fn ``warmup`` times untimed (page faults, caches, thread start-up),
    then ``repeats`` times timed, one call at a time."""
    return time_side_by_side({"fn": fn}, warmup=warmup, repeats=repeats)["fn"]


def time_side_by_side(callables: dict, *, warmup: int = 2, repeats: int = 10) -> dict:
    """Times several callables (name -> fn) in alternating rounds
    (``attnkit.benchmarks.timed_rounds``). Returns name -> Timing."""
    rounds = timed_rounds(callables, warmup, repeats)
    return {name: Timing(statistics.median(s), min(s), max(s), repeats) for name, s in rounds.items()}


# -------------------------------------------------------------------- peers --
def set_threads(threads: int, torch=None) -> None:
    """One thread count for attnkit and the peer, so the comparison is fair."""
    attnkit.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)


# ------------------------------------------------------------ machine limits --
_bandwidth_cache: dict = {}
_fma_cache: dict = {}


def memory_bandwidth(kind: str, threads: int, probe_mib: int = 512, repeats: int = 5) -> float:
    """GB/s of a STREAM-style pass ('read', 'write', 'copy', 'triad') on
    ``threads`` threads with the active ISA; measured once per run."""
    key = (kind, threads, probe_mib, attnkit.cpu_isa())
    if key not in _bandwidth_cache:
        _bandwidth_cache[key] = _C.probe_memory_bandwidth(kind, probe_mib * MIB, threads, repeats)
    return _bandwidth_cache[key]


def fma_peak(threads: int, isa: Optional[str] = None) -> float:
    """FP32 GFLOP/s of independent FMA chains on ``threads`` threads, with the
    given ISA's kernels (default: the active one); measured once per run."""
    isa = isa or attnkit.cpu_isa()
    key = (threads, isa)
    if key not in _fma_cache:
        _fma_cache[key] = _C.probe_fma_peak(threads, isa)
    return _fma_cache[key]


def machine_facts(torch=None) -> dict:
    """What a reader needs to compare figures across machines."""
    facts = {
        "cpu": cpu_model(),
        "logical cpus": os.cpu_count(),
        "l3 cache": _l3_size(),
        "python": platform.python_version(),
        "attnkit": attnkit.__version__,
        "attnkit cpu isa": attnkit.cpu_isa(),
        "compiler": attnkit.build_info()["compiler"],
    }
    if torch is not None:
        facts["torch"] = torch.__version__
    return facts


def _l3_size() -> str:
    for index in range(8):
        base = Path(f"/sys/devices/system/cpu/cpu0/cache/index{index}")
        try:
            if (base / "level").read_text().strip() == "3":
                return (base / "size").read_text().strip()
        except OSError:
            break
    return "unknown"


# ------------------------------------------------------------------- tables --
@dataclass
class Row:
    """One measurement: ``work`` units (bytes or FLOPs) per call, so a time
    becomes a throughput; the peers' times from the same run, by name; the
    machine's limit for this kind of work."""

    op: str
    case: str
    threads: int
    work: float
    unit: str  # "GB/s" (work in bytes) or "GFLOP/s" (work in FLOPs)
    ours: Timing
    peers: dict = field(default_factory=dict)  # name -> Timing
    limit: Optional[float] = None  # in `unit`
    limit_name: str = ""

    def throughput(self, timing: Timing) -> float:
        return self.work / timing.median * 1e-9

    def to_json(self) -> dict:
        return {
            "op": self.op,
            "case": self.case,
            "threads": self.threads,
            "work": self.work,
            "unit": self.unit,
            "ours": {**asdict(self.ours), "throughput": self.throughput(self.ours)},
            "peers": {
                name: {**asdict(t), "throughput": self.throughput(t), "ours_speedup": t.median / self.ours.median}
                for name, t in self.peers.items()
            },
            "limit": self.limit,
            "limit_name": self.limit_name,
            "fraction_of_limit": None if self.limit is None else self.throughput(self.ours) / self.limit,
        }


def print_table(rows: list, title: str = "") -> None:
    """One line per row: our time and throughput (± half the spread), the
    fraction of the limit, then each peer's throughput and ours/peer (above 1:
    attnkit is faster)."""
    peer_names = list(dict.fromkeys(name for r in rows for name in r.peers))
    header = ["op", "case", "thr", "ours ms", "±", "ours", "of limit", "limit"]
    for name in peer_names:
        header += [name, f"ours/{name}"]
    lines = []
    for r in rows:
        ours = r.throughput(r.ours)
        line = [
            r.op,
            r.case,
            str(r.threads),
            f"{r.ours.median * 1e3:.2f}",
            f"{50 * r.ours.spread:.0f}%",
            f"{ours:.1f} {r.unit}",
            "-" if r.limit is None else f"{ours / r.limit:.0%}",
            "-" if r.limit is None else f"{r.limit:.1f} {r.unit} {r.limit_name}",
        ]
        for name in peer_names:
            peer = r.peers.get(name)
            line += ["-", "-"] if peer is None else [f"{r.throughput(peer):.1f}", f"{peer.median / r.ours.median:.2f}"]
        lines.append(line)
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    if title:
        print(title)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    sys.stdout.flush()


def write_results(script: str, rows: list, settings: dict, torch=None) -> Path:
    """bench/results/<script>.json: the command, the machine, the limits
    measured, every row."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{Path(script).stem}.json"
    document = {
        "script": Path(script).name,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
        "machine": machine_facts(torch),
        "memory_bandwidth_gbps": {f"{k[0]}@{k[1]}t": v for k, v in _bandwidth_cache.items()},
        "fma_peak_gflops": {f"{k[1]}@{k[0]}t": v for k, v in _fma_cache.items()},
        "rows": [r.to_json() for r in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# ------------------------------------------------------------ kernel timing --
class KernelTimer:
    """Times every call into the native module ``attnkit._C`` while active.

    The functional ops call kernels as ``_C.name(...)``, an attribute lookup
    on the module at each call, so replacing the module's attributes with
    timing wrappers catches every call made through them. (Methods of
    ``_C.Array``, such as reshape, are not wrapped: they make no arithmetic
    and count as Python time.) Use as a context manager around one pass;
    afterwards ``seconds`` and ``calls`` hold per-name totals, and
    ``wrapper_seconds_per_call`` the wrapper's own cost per call, measured on
    a no-op, so that ``python_seconds(wall)`` can take it out of the Python
    time rather than blaming it on the library.
    """

    def __init__(self) -> None:
        self.seconds: dict = {}
        self.calls: dict = {}
        self._originals: dict = {}
        self.wrapper_seconds_per_call = self._measure_wrapper_cost()

    def _wrap(self, name: str, fn):
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        def timed(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - start
                seconds[name] = seconds.get(name, 0.0) + elapsed
                calls[name] = calls.get(name, 0) + 1

        return timed

    def _measure_wrapper_cost(self, count: int = 20000) -> float:
        """Seconds a wrapped call costs beyond the bare call, per call: the
        wrapper's frame, the two clock reads and the bookkeeping, part of
        which lands inside the measured interval and part outside."""

        def noop():
            return None

        probe = KernelTimer.__new__(KernelTimer)
        probe.seconds, probe.calls = {}, {}
        wrapped = KernelTimer._wrap(probe, "noop", noop)
        best_bare = best_wrapped = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(count):
                noop()
            best_bare = min(best_bare, time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(count):
                wrapped()
            best_wrapped = min(best_wrapped, time.perf_counter() - start)
        return max(best_wrapped - best_bare, 0.0) / count

    def __enter__(self) -> KernelTimer:
        for name in dir(_C):
            value = getattr(_C, name)
            # Builtin functions only: classes (Array) and submodules stay as they are.
            if name.startswith("__") or isinstance(value, type) or not callable(value):
                continue
            self._originals[name] = value
            setattr(_C, name, self._wrap(name, value))
        return self

    def __exit__(self, *exc) -> None:
        for name, value in self._originals.items():
            setattr(_C, name, value)
        self._originals.clear()

    @property
    def kernel_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def python_seconds(self, wall: float) -> float:
        """``wall`` (of the instrumented pass) less the time inside kernels
        and less the wrappers' own cost: the time Python spent around them."""
        return wall - self.kernel_seconds - self.total_calls * self.wrapper_seconds_per_call

    def breakdown(self, top: int = 0) -> list:
        """(name, seconds, calls), the most expensive first."""
        rows = sorted(((n, s, self.calls[n]) for n, s in self.seconds.items()), key=lambda r: -r[1])
        return rows[:top] if top else rows
