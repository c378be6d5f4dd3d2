"""Shared helpers for the bench scripts.

The method is attnkit.benchmarks' (its module docstring says it in full):
each library runs in a worker process of its own, with its default settings
at the thread count asked for; the parent runs the workers one at a time in
alternating rounds (``--rounds``), merges their timings (median of the round
medians, and their spread), measures the machine's limits, and states every
figure with our time, each peer's, the ratio and the fraction of the limit.

A script is both the parent and the worker: the parent reruns it with
``--worker SIDE --threads N --worker-out PATH``; ``run`` (or, for scripts
with tables of their own, ``run_worker`` and ``measure_sides``) takes care
of both. Results are printed and written to ``bench/results/<script>.json``,
with the machine's facts (CPU model, ISA, caches, versions, date) and limits.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import attnkit
from attnkit import benchmarks
from attnkit.benchmarks import LIMIT_NAMES, MIB, Recorder, Timing, torch_installed

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ options --
def argument_parser(description: str, peers: bool = True, calls: bool = True) -> argparse.ArgumentParser:
    """The options every bench script shares, with ``--no-torch`` where it
    has ``peers`` and ``--repeats`` / ``--warmup`` where it times repeated
    ``calls``; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to run at (default: 1 2)")
    parser.add_argument(
        "--probe-mib",
        type=int,
        default=beyond_l3_mib(512),
        help="memory-bandwidth probe footprint in MiB (default: twice the L3, at least 512)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="worker processes per library, run in alternating rounds (default: 3)"
    )
    if calls:
        parser.add_argument(
            "--repeats", type=int, default=10, help="timed calls per measurement in each worker (default: 10)"
        )
        parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: 2)")
    if peers:
        parser.add_argument("--no-torch", action="store_true", help="do not compare against PyTorch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    return parser


def beyond_l3_mib(minimum: int, times: int = 2) -> int:
    """MiB that ``times`` L3 caches do not hold (sysfs's size; in a virtual
    machine the hypervisor's), at least ``minimum``: a working set that must
    come from memory on this machine."""
    l3 = benchmarks.cache_bytes("L3") or 0
    return max(minimum, -(-times * l3 // MIB))


def add_row_flags(parser: argparse.ArgumentParser, widths: list, what: str) -> None:
    """The flags of the benchmarks of row-wise ops (norms, softmax):
    ``--mib``, the size of each [N, C] array (default: one that the L3 does
    not hold, at least 128 MiB), and ``--widths``, the row widths C
    (``what`` they are to the op)."""
    parser.add_argument(
        "--mib",
        type=int,
        default=beyond_l3_mib(128, 1),
        help="MiB per [N, C] array (default: the L3, at least 128)",
    )
    default = " ".join(str(width) for width in widths)
    parser.add_argument(
        "--widths", type=int, nargs="+", default=widths, help=f"row widths C, {what} (default: {default})"
    )


def measure_each_width(measure_width: Callable) -> Callable:
    """The ``measure`` of a row-wise benchmark (``--widths``, see
    ``add_row_flags``): ``measure_width(recorder, side, torch, width, args)``
    for each width in turn."""

    def measure(recorder, side: str, torch, args) -> None:
        for width in args.widths:
            measure_width(recorder, side, torch, width, args)

    return measure


def sides(args, peers: tuple = ("torch",)) -> list:
    """attnkit and those of ``peers`` that can run here: PyTorch when it is
    installed and not ``--no-torch``; numpy always."""
    return ["attnkit"] + [p for p in peers if p != "torch" or torch_installed(args.no_torch)]


# ------------------------------------------------------------------ workers --
def start_side(side: str, threads: int):
    """In a worker: gives the side's library ``threads`` threads and returns
    the torch module on PyTorch's sides (named "torch..."), else None. numpy's
    threads are set by the parent, through the worker's environment."""
    if side.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        return torch
    if side.startswith("attnkit"):
        attnkit.set_num_threads(threads)
    return None


def run_worker(args, measure: Callable) -> None:
    """When this process is a worker (``--worker``): calls ``measure(recorder,
    side, torch, args)`` at its one thread count, writes what it recorded for
    the parent, and exits. Otherwise returns at once."""
    if not getattr(args, "worker", None):
        return
    threads = args.threads[0]
    torch = start_side(args.worker, threads)
    recorder = Recorder(args.worker, threads, getattr(args, "warmup", 0), getattr(args, "repeats", 1))
    measure(recorder, args.worker, torch, args)
    recorder.write(args.worker_out)
    sys.exit(0)


def measure_sides(
    script: str,
    args,
    side_names: list,
    rounds: Optional[int] = None,
    runner: Optional[list] = None,
    numpy_sides: tuple = ("numpy",),
):
    """In the parent: runs each side's worker (this script again, with
    ``--worker SIDE``) in ``rounds`` (default ``args.rounds``) alternating
    rounds at each of ``args.threads``. Returns (rows, documents): the rows
    of ``benchmarks.merge_rounds`` and, by thread count, side -> the
    workers' documents. ``runner``: argv that runs the script instead of
    ``python SCRIPT`` (``python bench/kernel_timer.py SCRIPT``, say).
    ``numpy_sides`` get numpy's BLAS thread count in their environment."""
    rows, documents = [], {}
    prefix = runner or [sys.executable, script]
    for threads in args.threads:
        commands = {side: [*prefix, *sys.argv[1:], "--threads", str(threads), "--worker", side] for side in side_names}
        environments = {side: benchmarks.blas_threads_environment(threads) for side in numpy_sides}
        documents[threads] = benchmarks.run_rounds(commands, rounds or args.rounds, environments)
        rows += benchmarks.merge_rounds(documents[threads])
    return rows, documents


KERNEL_TIMER = str(Path(__file__).resolve().parent / "kernel_timer.py")


def kernel_timer_runner(script: str) -> list:
    """The argv that runs ``script`` with bench/kernel_timer.py's timer installed."""
    return [sys.executable, KERNEL_TIMER, script]


# ------------------------------------------------------------ machine limits --
_limits: dict = {}


def limits(threads: int, probe_mib: int) -> dict:
    """``benchmarks.measure_limits`` at ``threads`` threads, measured once per
    run (in the parent, while no worker runs)."""
    if threads not in _limits:
        _limits[threads] = benchmarks.measure_limits(threads, probe_mib)
    return _limits[threads]


def print_machine(args) -> dict:
    """Measures the limits at every thread count, prints them with the
    machine's facts, and returns the facts."""
    facts = benchmarks.machine_facts()
    for threads in args.threads:
        limits(threads, args.probe_mib)
    print(benchmarks.describe_machine(facts, _limits))
    if "OMP_WAIT_POLICY" in facts["thread settings"]:
        print("note: OMP_WAIT_POLICY is set in this shell, so it applies to every library measured")
    sys.stdout.flush()
    return facts


# ------------------------------------------------------------------- tables --
@dataclass
class Row:
    """One measurement: ``work`` units (bytes or FLOPs) per call, so a time
    becomes a throughput; the peers' times by name; the machine's limit for
    this kind of work."""

    op: str
    case: str
    threads: int
    work: float
    unit: str  # "GB/s" (work in bytes) or "GFLOP/s" (work in FLOPs)
    ours: Timing
    peers: dict = field(default_factory=dict)  # name -> Timing
    limit: Optional[float] = None  # in `unit`
    limit_name: str = ""

    @classmethod
    def from_merged(cls, row: dict, probe_mib: int) -> Row:
        """A row of ``benchmarks.merge_rounds``: the "attnkit" column is ours."""
        peers = dict(row["columns"])
        ours = peers.pop("attnkit")
        kind = row["limit"]
        limit = None if kind is None else limits(row["threads"], probe_mib)[kind]
        return cls(row["op"], row["case"], row["threads"], row["work"], row["unit"], ours, peers, limit, kind or "")

    def throughput(self, timing: Timing) -> float:
        return self.work / timing.median * 1e-9

    def to_json(self) -> dict:
        return {
            "op": self.op,
            "case": self.case,
            "threads": self.threads,
            "work": self.work,
            "unit": self.unit,
            "ours": {**self.ours.to_json(), "throughput": self.throughput(self.ours)},
            "peers": {
                name: {**t.to_json(), "throughput": self.throughput(t), "ours_speedup": t.median / self.ours.median}
                for name, t in self.peers.items()
            },
            "limit": self.limit,
            "limit_name": self.limit_name,
            "fraction_of_limit": None if self.limit is None else self.throughput(self.ours) / self.limit,
        }


def format_columns(header: list, lines: list) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    text = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    text += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text)


def print_table(rows: list, title: str = "") -> None:
    """One line per row: our time and throughput (± half the spread), the
    fraction of the limit, then each peer's throughput, its ± and ours/peer
    (above 1: attnkit is faster)."""
    peer_names = list(dict.fromkeys(name for r in rows for name in r.peers))
    header = ["op", "case", "thr", "ours ms", "±", "ours", "of limit", "limit"]
    for name in peer_names:
        header += [name, "±", f"ours/{name}"]
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
            "-" if r.limit is None else f"{r.limit:.1f} {LIMIT_NAMES[r.limit_name]}",
        ]
        for name in peer_names:
            peer = r.peers.get(name)
            if peer is None:
                line += ["-", "", "-"]
            else:
                line += [f"{r.throughput(peer):.1f}", f"{50 * peer.spread:.0f}%", f"{peer.median / r.ours.median:.2f}"]
        lines.append(line)
    if title:
        print(title)
    print(format_columns(header, lines))
    sys.stdout.flush()


def write_document(script: str, facts: dict, document: dict) -> Path:
    """bench/results/<script>.json: the command, the machine's facts and the
    limits measured in this run, then ``document``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{Path(script).stem}.json"
    full = {
        "script": Path(script).name,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": facts,
        "limits": {f"{threads} threads": limit for threads, limit in sorted(_limits.items())},
        "load average at the end": benchmarks.load_average(),
        **document,
    }
    path.write_text(json.dumps(full, indent=2) + "\n")
    return path


def run(script: str, args, measure: Callable, peers: tuple = ("torch",), title: str = "", settings=None) -> list:
    """The whole of a script that times ops against peers: as a worker,
    ``measure(recorder, side, torch, args)`` and exit (``run_worker``); as the
    parent, the machine, the rounds of workers, the table and the JSON.
    Returns the rows."""
    run_worker(args, measure)
    facts = print_machine(args)
    names = sides(args, peers)
    print(f"{args.rounds} round(s) of {', '.join(names)} worker processes at {args.threads} thread(s)")
    merged, _ = measure_sides(script, args, names)
    rows = [Row.from_merged(row, args.probe_mib) for row in merged]
    print_table(rows, title=title)
    settings = dict(vars(args), **(settings or {}))
    path = write_document(script, facts, {"settings": settings, "rows": [r.to_json() for r in rows]})
    print(f"written to {path}")
    return rows
