"""Softmax and log-softmax forward and backward throughput (GB/s) against
PyTorch and against the machine's memory bandwidth, at each thread count, over
rows of 1024 and 4096 on arrays far above the L3.

    python bench/bench_softmax.py [--threads 1 2] [--mib MIB] [--rounds 3] [--widths 1024 4096] [--no-torch]

Bytes counted are those the op must move: forward reads x and writes y (8 bytes
per element); backward reads dy and the forward's output y and writes dx (12
bytes per element). The limit is the probe pass with the same mix of reads and
writes: copy (1 read, 1 write) for forward, triad (2 reads, 1 write) for
backward.

PyTorch appears twice: `torch` is torch.softmax / torch.log_softmax (and aten's
_softmax_backward_data / _log_softmax_backward_data, what autograd calls) as a
user gets them, with a fresh output every call; `torch out=` writes into a
preallocated output, the kernel alone. attnkit's forward is F.softmax /
F.log_softmax as a user calls it; its backward is `_C.softmax_backward`, the
kernel autograd calls. Both allocate through attnkit's caching allocator, which
hands back the block freed by the previous call.
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

# Bytes moved per element.
FORWARD_BYTES = 8  # read x, write y
BACKWARD_BYTES = 12  # read dy and y, write dx


def measure_width(recorder, side: str, torch, width: int, args) -> None:
    """This side's rows of one width; its arrays are freed on return, before
    the next width allocates its own."""
    n_rows = max(1, args.mib * common.MIB // (4 * width))
    rng = np.random.default_rng(0)
    x_numpy = rng.standard_normal((n_rows, width), dtype=np.float32) * 3
    dy_numpy = rng.standard_normal((n_rows, width), dtype=np.float32)
    if side == "attnkit":
        x = attnkit.from_numpy(x_numpy)
        dy_array = attnkit.from_numpy(dy_numpy)._array
        # The backward's input is the forward's output.
        outputs = {log: _C.softmax_forward(x._array, 1.0, log) for log in (False, True)}
    else:
        aten = torch.ops.aten
        x_torch, dy_torch = torch.from_numpy(x_numpy), torch.from_numpy(dy_numpy)
        torch_outputs = {False: torch.softmax(x_torch, -1), True: torch.log_softmax(x_torch, -1)}
        out_torch = torch.empty_like(x_torch)
    case = f"C={width}, {n_rows} rows"
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        if side == "attnkit":
            user_function = F.log_softmax if log else F.softmax
            y = outputs[log]
            forward = {"attnkit": lambda: user_function(x, dim=-1)}
            backward = {"attnkit": lambda: _C.softmax_backward(dy_array, y, 1.0, log)}
        else:
            forward_op = aten._log_softmax if log else aten._softmax
            backward_op = aten._log_softmax_backward_data if log else aten._softmax_backward_data
            y_torch = torch_outputs[log]
            torch_function = torch.log_softmax if log else torch.softmax
            forward = {
                "torch": lambda: torch_function(x_torch, -1),
                "torch out=": lambda: forward_op.out(x_torch, -1, False, out=out_torch),
            }
            backward = {
                "torch": lambda: backward_op(dy_torch, y_torch, -1, torch.float32),
                # The out argument is named grad_input for softmax and out for log_softmax.
                "torch out=": lambda: backward_op.out(
                    dy_torch, y_torch, -1, torch.float32, **{("out" if log else "grad_input"): out_torch}
                ),
            }
        size = x_numpy.size
        recorder.time(f"{name} forward", case, forward, work=FORWARD_BYTES * size, unit="GB/s", limit="copy")
        recorder.time(f"{name} backward", case, backward, work=BACKWARD_BYTES * size, unit="GB/s", limit="triad")


measure = common.measure_each_width(measure_width)


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    common.add_row_flags(parser, [1024, 4096], "the softmax dimension")
    args = parser.parse_args()
    common.run(__file__, args, measure, title=f"Softmax over the last dimension, float32 ({args.mib} MiB per array)")


if __name__ == "__main__":
    main()
