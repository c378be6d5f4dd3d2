"""GEMM GFLOP/s against numpy (OpenBLAS) and PyTorch, at each thread count, and
the decode shapes' GB/s against memory bandwidth.

    python bench/bench_gemm.py [--threads 1 2] [--rounds 3] [--repeats 10] [--no-torch]
    python bench/bench_gemm.py --mixed [--threads 2] [--mixed-size 1024]

Every side writes into a preallocated output (numpy and torch with out=,
attnkit with out= and beta=0), so the kernels are compared, not allocators.
Each library runs in its own worker processes (common.py); numpy's worker
gets its thread count as a numpy user sets it, OPENBLAS_NUM_THREADS (and
MKL_NUM_THREADS) in its environment.

Rows:
- square and Transformer shapes (M, K, N): C[M,N] = A[M,K] B[K,N], 2MNK FLOPs,
  against the FMA peak measured by the probe;
- "bias+gelu": the same product with the bias and GELU fused into the
  epilogue, against our plain product (the epilogue's cost);
- decode shapes (M = 1 and 8 rows): GB/s counted on the bytes of B, against
  the probe's read bandwidth. B rotates through enough copies (> 2x the L3)
  that every product reads it from memory, as a model's layers would. Both
  the row-major B[K,N] and the linear layer's W[N,K] (x @ W^T) are timed.

--mixed measures sharing the cores: numpy, attnkit and PyTorch in one
process, as an app that calls all three; each library's SGEMM is timed alone
and right after one call of each other library, every library with its
default settings (idle OpenMP and OpenBLAS threads spin for a while after a
call, and take the cores from the next library's call). Rounds of separate
processes give the spread.
"""

from __future__ import annotations

import functools
import time

import common
import numpy as np

import attnkit
from attnkit import _C

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (768, 768, 768), (2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768)]
DECODE_SHAPES = [(1, 768, 3072), (8, 768, 3072)]
EPILOGUE_SHAPE = (2048, 768, 3072)
MIXED_SETTLE_S = 0.5  # longer than any library's idle threads spin (OpenBLAS: 2^28 cycles by default)


def gemm_callable(side: str, torch, a: np.ndarray, b: np.ndarray, c: np.ndarray, transpose_b: bool = False):
    """() -> None: c = a @ b (b transposed: ``b.T``, b given as [N, K]) by the
    side's library, into the preallocated c."""
    if side == "attnkit":
        a_, b_, c_ = (attnkit.from_numpy(x)._array for x in (a, b, c))
        return functools.partial(_C.matmul, a_, b_, transpose_b=transpose_b, out=c_)
    if side == "numpy":
        return functools.partial(np.matmul, a, b.T if transpose_b else b, out=c)
    tb = torch.from_numpy(b)
    return functools.partial(torch.matmul, torch.from_numpy(a), tb.T if transpose_b else tb, out=torch.from_numpy(c))


def measure(recorder, side: str, torch, args) -> None:
    """This side's rows: the shapes, the epilogue (attnkit only), the decode shapes."""
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        fn = gemm_callable(side, torch, a, b, c)
        recorder.time("gemm", f"{m}x{k}x{n}", {side: fn}, work=2.0 * m * n * k, unit="GFLOP/s", limit="fma")

    if side == "attnkit":
        m, k, n = EPILOGUE_SHAPE
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        bias = rng.standard_normal(n, dtype=np.float32)
        c = np.empty((m, n), np.float32)
        a_, w_, bias_, c_ = (attnkit.from_numpy(x)._array for x in (a, w, bias, c))
        callables = {
            "attnkit": lambda: _C.matmul(a_, w_, transpose_b=True, out=c_, bias=bias_, activation="gelu"),
            "plain": lambda: _C.matmul(a_, w_, transpose_b=True, out=c_),
        }
        recorder.time(
            "gemm bias+gelu", f"{m}x{k}x{n} vs plain", callables, work=2.0 * m * n * k, unit="GFLOP/s", limit="fma"
        )

    for m, k, n in DECODE_SHAPES:
        copies = max(2, args.decode_mib * common.MIB // (4 * k * n))
        x = rng.standard_normal((m, k), dtype=np.float32)
        y = np.empty((m, n), np.float32)
        for layout in ("B[K,N]", "W[N,K]"):
            transposed = layout == "W[N,K]"
            # Copies of one random matrix: distinct memory is what matters, and copying is faster than drawing.
            first = rng.standard_normal((n, k) if transposed else (k, n), dtype=np.float32)
            weights = [first] + [first.copy() for _ in range(copies - 1)]
            products = [gemm_callable(side, torch, x, w, y, transposed) for w in weights]

            def rotate():
                for product in products:
                    product()

            recorder.time(
                "gemm decode",
                f"{m}x{k}x{n} {layout}",
                {side: rotate},
                work=4.0 * k * n * copies,  # the bytes of the weights
                unit="GB/s",
                limit="read",
            )


# ------------------------------------------------------------ --mixed --
def measure_mixed(recorder, side: str, torch, args) -> None:
    """The --mixed worker: numpy, attnkit and PyTorch in this one process, as
    in an app that calls all three, each at the worker's thread count with
    its default settings. Each library's SGEMM is timed alone (its calls back
    to back, after half a second of them, which lets the others' idle
    threads park), then right after one call of each other library."""
    names = common.sides(args, peers=("numpy", "torch"))
    if "torch" in names:
        import torch

        torch.set_num_threads(recorder.threads)
    attnkit.set_num_threads(recorder.threads)  # numpy's: the parent's environment
    size = args.mixed_size
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    libraries = {name: gemm_callable(name, torch, a, b, np.empty_like(a)) for name in names}
    for fn in libraries.values():
        for _ in range(max(args.warmup, 1)):
            fn()
    for name, fn in libraries.items():
        # Its own calls for a while first, so that the other libraries' idle
        # threads have parked (a pause would hand the cores to other processes).
        deadline = time.perf_counter() + MIXED_SETTLE_S
        while time.perf_counter() < deadline:
            fn()
        recorder.time("sgemm", name, {"alone": fn}, work=2.0 * size**3, unit="GFLOP/s", limit="fma", warmup=0)
        for before_name, before in libraries.items():
            if before_name == name:
                continue
            seconds = []
            for _ in range(args.repeats):
                before()
                start = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - start)
            work = 2.0 * size**3
            recorder.add("sgemm", name, f"after {before_name}", seconds, work=work, unit="GFLOP/s", limit="fma")


def run_mixed(args) -> None:
    """The parent of --mixed: rounds of the mixed worker, one table."""
    common.run_worker(args, measure_mixed)
    facts = common.print_machine(args)
    names = common.sides(args, peers=("numpy", "torch"))
    print(f"{args.rounds} round(s) of one process calling {', '.join(names)} in turn")
    merged, _ = common.measure_sides(__file__, args, ["mixed"], numpy_sides=("mixed",))
    columns = ["alone"] + [f"after {name}" for name in names]
    header = ["library", "thr", "size"] + [f"{c} GFLOP/s" if c == "alone" else c for c in columns] + ["worst/alone"]
    lines = []
    for row in merged:
        timings = row["columns"]
        rate = {c: row["work"] / t.median * 1e-9 for c, t in timings.items()}
        worst = min(v for c, v in rate.items() if c != "alone")
        lines.append(
            [row["case"], str(row["threads"]), f"{args.mixed_size}^3"]
            + ["-" if c not in rate else f"{rate[c]:.1f} ±{50 * timings[c].spread:.0f}%" for c in columns]
            + [f"{worst / rate['alone']:.2f}"]
        )
    print(f"SGEMM in one process shared by {', '.join(names)}, each with its default settings")
    print(common.format_columns(header, lines))
    document = {
        "settings": vars(args),
        "rows": [
            {
                **{k: row[k] for k in ("op", "case", "threads", "work")},
                "columns": {
                    c: {**t.to_json(), "gflops": row["work"] / t.median * 1e-9} for c, t in row["columns"].items()
                },
            }
            for row in merged
        ],
    }
    path = common.write_document("bench_gemm_mixed", facts, document)
    print(f"written to {path}")


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--decode-mib",
        type=int,
        default=common.beyond_l3_mib(96),
        help="MiB of rotated decode weights (default: twice the L3, at least 96)",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="instead: numpy, attnkit and PyTorch sharing one process, each SGEMM alone and after the others'",
    )
    parser.add_argument("--mixed-size", type=int, default=1024, help="the --mixed SGEMM's M = N = K (default: 1024)")
    args = parser.parse_args()
    if args.mixed:
        run_mixed(args)
        return
    common.run(
        __file__, args, measure, peers=("numpy", "torch"), title="GEMM (float32); decode rows in GB/s of weights"
    )


if __name__ == "__main__":
    main()
