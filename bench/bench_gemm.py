"""GEMM GFLOP/s against numpy (OpenBLAS) and PyTorch, at each thread count, and
the decode shapes' GB/s against memory bandwidth.

    python bench/bench_gemm.py [--threads 1 2] [--repeats 10] [--no-torch] [--mixed]

Every side writes into a preallocated output (numpy and torch with out=,
attnkit with out= and beta=0), so the kernels are compared, not allocators.
numpy's OpenBLAS threads are pinned with threadpoolctl when it is installed
(`pip install threadpoolctl`); without it numpy runs at its default thread
count and the table says so.

Rows:
- square and Transformer shapes (M, K, N): C[M,N] = A[M,K] B[K,N], 2MNK FLOPs,
  against the FMA peak measured by the probe;
- "bias+gelu": the same product with the bias and GELU fused into the
  epilogue, against our plain product (the epilogue's cost);
- decode shapes (M = 1 and 8 rows): GB/s counted on the bytes of B, against
  the probe's read bandwidth. B rotates through enough copies (> 2x the L3)
  that every product reads it from memory, as a model's layers would. Both
  the row-major B[K,N] and the linear layer's W[N,K] (x @ W^T) are timed.
- ``--mixed`` (only these rows): sharing the cores. Each library's 1024^3
  product at the largest thread count, timed right after a call of another
  library in the same process and right after its own ("alone"); the ratio
  column is the speed it keeps. It runs in a child process in which numpy,
  torch and attnkit keep their default thread settings (no OMP_WAIT_POLICY or
  OPENBLAS_THREAD_TIMEOUT from bench/common.py), as an application has them.

The GEMM's register tile and cache blocks (``_C.gemm_config()``, chosen from
the caches the CPU reports) are printed with the machine and written to the
JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import common  # first: it sets how idle threads wait, before any thread pool starts
import numpy as np

import attnkit
from attnkit import _C
from attnkit.benchmarks import optional_torch

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (768, 768, 768), (2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768)]
DECODE_SHAPES = [(1, 768, 3072), (8, 768, 3072)]
EPILOGUE_SHAPE = (2048, 768, 3072)


def numpy_threads(threads):
    """A context that pins numpy's BLAS threads, or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


# Runs in the child of --mixed, which imports numpy, torch and attnkit before
# anything that sets their thread environment.
MIXED_CHILD = """
import json, sys
import numpy
try:
    import torch
except ImportError:
    torch = None
import attnkit
sys.path.insert(0, {bench_dir!r})
import bench_gemm
print(json.dumps(bench_gemm.mixed_timings({threads}, {repeats}, torch is not None and not {no_torch})))
"""


def mixed_timings(threads: int, repeats: int, with_torch: bool) -> dict:
    """{library: {previous library or "alone": [seconds per call]}} for the
    1024^3 product at ``threads`` threads, each call right after one of
    ``previous``."""
    import time

    size = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    a_, b_, c_ = (attnkit.from_numpy(x)._array for x in (a, b, c))
    attnkit.set_num_threads(threads)
    calls = {"attnkit": lambda: _C.matmul(a_, b_, out=c_), "numpy": lambda: np.matmul(a, b, out=c)}
    if with_torch:
        import torch

        torch.set_num_threads(threads)
        ta, tb, tc = (torch.from_numpy(x) for x in (a, b, c))
        calls["torch"] = lambda: torch.matmul(ta, tb, out=tc)
    pin = numpy_threads(threads)
    seconds = {name: {other: [] for other in ["alone", *calls] if other != name} for name in calls}
    with pin if pin is not None else contextlib.nullcontext():
        for fn in calls.values():
            fn()
        for _ in range(repeats):
            for name, fn in calls.items():
                for previous in seconds[name]:
                    (fn if previous == "alone" else calls[previous])()
                    start = time.perf_counter()
                    fn()
                    seconds[name][previous].append(time.perf_counter() - start)
    return seconds


def timing_of(seconds: list) -> common.Timing:
    return common.Timing(statistics.median(seconds), min(seconds), max(seconds), len(seconds))


def mixed_rows(args, threads: int) -> list:
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    code = MIXED_CHILD.format(
        bench_dir=str(Path(__file__).resolve().parent), threads=threads, repeats=args.repeats, no_torch=args.no_torch
    )
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    seconds = json.loads(result.stdout.strip().splitlines()[-1])
    rows = []
    for name, by_previous in seconds.items():
        alone = timing_of(by_previous["alone"])
        for previous, values in by_previous.items():
            if previous != "alone":
                rows.append(
                    common.Row(
                        "gemm 1024^3",
                        f"{name} after {previous}",
                        threads,
                        2.0 * 1024**3,
                        "GFLOP/s",
                        timing_of(values),
                        {"alone": alone},
                    )
                )
    return rows


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--decode-mib", type=int, default=96, help="total size of the rotated decode weights in MiB (default: 96)"
    )
    parser.add_argument("--mixed", action="store_true", help="only the rows of sharing the cores with numpy and torch")
    args = parser.parse_args()
    torch = optional_torch(disabled=args.no_torch)
    config = _C.gemm_config()
    caches = attnkit.build_info()["cpu_caches"]
    print(
        f"gemm: {attnkit.cpu_isa()} tile {config['mr']}x{config['nr']}, blocks MC {config['mc']} KC {config['kc']} "
        f"NC {config['nc']}{' (overridden)' if config['overridden'] else ''}; caches {caches}"
    )
    settings = {**vars(args), "gemm_config": config, "cpu_caches": caches}
    if args.mixed:
        rows = mixed_rows(args, max(args.threads))
        print(", ".join(f"{key}: {value}" for key, value in common.machine_facts(torch).items()))
        common.print_table(rows, title="GEMM right after another library's call (ours/alone: the speed it keeps)")
        print(f"written to {common.write_results(__file__, rows, settings, torch)}")
        return
    rng = np.random.default_rng(0)
    timed = dict(warmup=args.warmup, repeats=args.repeats)
    rows = []
    numpy_pinned = True

    for threads in args.threads:
        common.set_threads(threads, torch)
        pin = numpy_threads(threads)
        numpy_pinned = numpy_pinned and pin is not None
        with pin if pin is not None else contextlib.nullcontext():
            peak = common.fma_peak(threads)
            read_bandwidth = common.memory_bandwidth("read", threads, args.probe_mib)
            for m, k, n in SHAPES:
                a = rng.standard_normal((m, k), dtype=np.float32)
                b = rng.standard_normal((k, n), dtype=np.float32)
                c = np.empty((m, n), np.float32)
                a_, b_, c_ = (attnkit.from_numpy(x)._array for x in (a, b, c))
                callables = {"ours": lambda: _C.matmul(a_, b_, out=c_), "numpy": lambda: np.matmul(a, b, out=c)}
                if torch is not None:
                    ta, tb, tc = (torch.from_numpy(x) for x in (a, b, c))
                    callables["torch"] = lambda: torch.matmul(ta, tb, out=tc)
                timings = common.time_side_by_side(callables, **timed)
                rows.append(
                    common.Row(
                        "gemm",
                        f"{m}x{k}x{n}",
                        threads,
                        2.0 * m * n * k,
                        "GFLOP/s",
                        timings.pop("ours"),
                        timings,
                        peak,
                        "FMA peak",
                    )
                )

            m, k, n = EPILOGUE_SHAPE
            a = rng.standard_normal((m, k), dtype=np.float32)
            w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
            bias = rng.standard_normal(n, dtype=np.float32)
            c = np.empty((m, n), np.float32)
            a_, w_, bias_, c_ = (attnkit.from_numpy(x)._array for x in (a, w, bias, c))
            timings = common.time_side_by_side(
                {
                    "fused": lambda: _C.matmul(a_, w_, transpose_b=True, out=c_, bias=bias_, activation="gelu"),
                    "plain": lambda: _C.matmul(a_, w_, transpose_b=True, out=c_),
                },
                **timed,
            )
            rows.append(
                common.Row(
                    "gemm bias+gelu",
                    f"{m}x{k}x{n} vs plain",
                    threads,
                    2.0 * m * n * k,
                    "GFLOP/s",
                    timings["fused"],
                    {"plain": timings["plain"]},
                    peak,
                    "FMA peak",
                )
            )

            for m, k, n in DECODE_SHAPES:
                copies = max(2, args.decode_mib * common.MIB // (4 * k * n))
                x = rng.standard_normal((m, k), dtype=np.float32)
                y = np.empty((m, n), np.float32)
                x_, y_ = attnkit.from_numpy(x)._array, attnkit.from_numpy(y)._array
                for layout in ("B[K,N]", "W[N,K]"):
                    transposed = layout == "W[N,K]"
                    weights = [
                        rng.standard_normal((n, k) if transposed else (k, n), dtype=np.float32) for _ in range(copies)
                    ]
                    natives = [attnkit.from_numpy(wt)._array for wt in weights]
                    views = [wt.T if transposed else wt for wt in weights]

                    def ours():
                        for wt in natives:
                            _C.matmul(x_, wt, transpose_b=transposed, out=y_)

                    def numpy_side():
                        for wt in views:
                            np.matmul(x, wt, out=y)

                    callables = {"ours": ours, "numpy": numpy_side}
                    if torch is not None:
                        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
                        tviews = [torch.from_numpy(wt).T if transposed else torch.from_numpy(wt) for wt in weights]

                        def torch_side():
                            for wt in tviews:
                                torch.matmul(tx, wt, out=ty)

                        callables["torch"] = torch_side
                    timings = common.time_side_by_side(callables, **timed)
                    rows.append(
                        common.Row(
                            "gemm decode",
                            f"{m}x{k}x{n} {layout}",
                            threads,
                            4.0 * k * n * copies,
                            "GB/s",
                            timings.pop("ours"),
                            timings,
                            read_bandwidth,
                            "read",
                        )
                    )

    facts = common.machine_facts(torch)
    print(", ".join(f"{key}: {value}" for key, value in facts.items()))
    if not numpy_pinned:
        print("note: threadpoolctl is not installed; numpy ran at its default thread count")
    common.print_table(rows, title="GEMM (float32); decode rows in GB/s of weights")
    path = common.write_results(__file__, rows, settings, torch)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
