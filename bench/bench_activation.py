"""GELU forward and backward throughput (GB/s) against PyTorch and against the
machine's memory bandwidth, at each thread count, on arrays far above the L3.

    python bench/bench_activation.py [--threads 1 2] [--mib MIB] [--rounds 3] [--no-torch]

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

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

# Bytes moved per element.
FORWARD_BYTES = 8  # read x, write y
BACKWARD_BYTES = 12  # read dy and x, write dx


def measure(recorder, side: str, torch, args) -> None:
    """This side's rows: attnkit's F.gelu and the kernel autograd calls, or
    PyTorch's as a user calls it and with preallocated outputs."""
    n = args.mib * common.MIB // 4
    rng = np.random.default_rng(0)
    x_numpy = rng.standard_normal(n, dtype=np.float32) * 3
    dy_numpy = rng.standard_normal(n, dtype=np.float32)
    if side == "attnkit":
        x = attnkit.from_numpy(x_numpy)
        x_array, dy_array = x._array, attnkit.from_numpy(dy_numpy)._array
    else:
        x_torch, dy_torch = torch.from_numpy(x_numpy), torch.from_numpy(dy_numpy)
        out_torch = torch.empty_like(x_torch)
    for approximate in ("none", "tanh"):
        if side == "attnkit":
            forward = {"attnkit": lambda: F.gelu(x, approximate=approximate)}
            # backward: the kernel autograd calls, without the forward
            backward = {"attnkit": lambda: _C.gelu_backward(dy_array, x_array, approximate)}
        else:
            aten = torch.ops.aten
            forward = {
                "torch": lambda: torch.nn.functional.gelu(x_torch, approximate=approximate),
                "torch out=": lambda: aten.gelu.out(x_torch, approximate=approximate, out=out_torch),
            }
            backward = {
                "torch": lambda: aten.gelu_backward(dy_torch, x_torch, approximate=approximate),
                "torch out=": lambda: aten.gelu_backward.grad_input(
                    dy_torch, x_torch, approximate=approximate, grad_input=out_torch
                ),
            }
        recorder.time("gelu forward", approximate, forward, work=FORWARD_BYTES * n, unit="GB/s", limit="copy")
        recorder.time("gelu backward", approximate, backward, work=BACKWARD_BYTES * n, unit="GB/s", limit="triad")


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--mib", type=int, default=common.beyond_l3_mib(128, 1), help="MiB per array (default: the L3, at least 128)"
    )
    args = parser.parse_args()
    n = args.mib * common.MIB // 4
    common.run(
        __file__,
        args,
        measure,
        title=f"GELU, {n} float32 elements ({args.mib} MiB per array)",
        settings={"elements": n},
    )


if __name__ == "__main__":
    main()
