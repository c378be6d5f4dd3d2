"""GELU forward and backward throughput (GB/s) against PyTorch and against the
machine's memory bandwidth, at each thread count, on arrays far above the L3.

    python bench/bench_activation.py [--threads 1 2] [--mib 128] [--no-torch]

Bytes counted are those the op must move: forward reads x and writes y (8 bytes
per element), backward reads dy and x and writes dx (12 bytes per element). The
limit is the probe pass with the same mix of reads and writes: copy (1 read,
1 write) for forward, triad (2 reads, 1 write) for backward.

PyTorch appears twice: `torch` is torch.nn.functional.gelu (and aten's
gelu_backward) as a user calls it, which allocates a fresh output every call;
`torch out=` writes into a preallocated output, the kernel alone. attnkit's ops
allocate through its caching allocator, which hands back the block freed by the
previous call, so they pay no page faults after the first call.
"""

from __future__ import annotations

import common  # first: it sets how idle threads wait, before any thread pool starts
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

# Bytes moved per element.
FORWARD_BYTES = 8  # read x, write y
BACKWARD_BYTES = 12  # read dy and x, write dx


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="size of each array in MiB (default: 128, 4x a 32 MiB L3)")
    args = parser.parse_args()
    torch = common.optional_torch(disabled=args.no_torch)

    n = args.mib * common.MIB // 4
    rng = np.random.default_rng(0)
    x_numpy = rng.standard_normal(n, dtype=np.float32) * 3
    dy_numpy = rng.standard_normal(n, dtype=np.float32)
    x = attnkit.from_numpy(x_numpy)
    x_array, dy_array = x._array, attnkit.from_numpy(dy_numpy)._array
    if torch is not None:
        x_torch, dy_torch = torch.from_numpy(x_numpy), torch.from_numpy(dy_numpy)
        out_torch = torch.empty_like(x_torch)

    timed = dict(warmup=args.warmup, repeats=args.repeats)
    rows = []
    for threads in args.threads:
        common.set_threads(threads, torch)
        copy_bandwidth = common.memory_bandwidth("copy", threads, args.probe_mib)
        triad_bandwidth = common.memory_bandwidth("triad", threads, args.probe_mib)
        for approximate in ("none", "tanh"):
            forward = {"ours": lambda: F.gelu(x, approximate=approximate)}
            # backward: the kernel autograd calls, without the forward
            backward = {"ours": lambda: _C.gelu_backward(dy_array, x_array, approximate)}
            if torch is not None:
                forward["torch"] = lambda: torch.nn.functional.gelu(x_torch, approximate=approximate)
                forward["torch out="] = lambda: torch.ops.aten.gelu.out(x_torch, approximate=approximate, out=out_torch)
                backward["torch"] = lambda: torch.ops.aten.gelu_backward(dy_torch, x_torch, approximate=approximate)
                backward["torch out="] = lambda: torch.ops.aten.gelu_backward.grad_input(
                    dy_torch, x_torch, approximate=approximate, grad_input=out_torch
                )
            for op, callables, work, limit, limit_name in (
                ("gelu forward", forward, FORWARD_BYTES * n, copy_bandwidth, "copy"),
                ("gelu backward", backward, BACKWARD_BYTES * n, triad_bandwidth, "triad"),
            ):
                timings = common.time_side_by_side(callables, **timed)
                ours = timings.pop("ours")
                rows.append(common.Row(op, approximate, threads, work, "GB/s", ours, timings, limit, limit_name))

    facts = common.machine_facts(torch)
    print(", ".join(f"{k}: {v}" for k, v in facts.items()))
    common.print_table(rows, title=f"GELU, {n} float32 elements ({args.mib} MiB per array)")
    path = common.write_results(__file__, rows, {**vars(args), "elements": n}, torch)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
