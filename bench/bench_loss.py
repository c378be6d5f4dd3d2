"""Cross-entropy forward and backward throughput (GB/s) against PyTorch and
against the machine's memory bandwidth, at each thread count: a GPT-2 vocabulary
(V = 50257) over a few thousand rows, and a character-level one (V = 65) over
many rows, both far above the L3.

    python bench/bench_loss.py [--threads 1 2] [--rows 2048] [--mib MIB] [--rounds 3] [--no-torch]

Bytes counted are those the op must move, for N rows of V logits (float32) and
int64 targets:
- forward reads the logits once and the targets (4 NV + 8 N), and writes each
  row's loss and the statistics saved for backward (max and sum of
  exponentials, 4 N + 12 N); limit: the probe's read pass (read-only).
- backward reads the logits, the targets and the statistics, and writes
  dlogits (8 NV + 20 N); limit: copy (1 read, 1 write).
The reduction is "mean", the one training uses.

PyTorch computes F.cross_entropy as log_softmax then nll_loss, so its forward
also writes (and its backward reads) an [N, V] log-probability array; its bytes
are counted as ours, so its GB/s compare times. `torch` is F.cross_entropy as a
user calls it, and for backward the two kernels autograd calls
(nll_loss_backward, then _log_softmax_backward_data on the saved
log-probabilities), each with a fresh output; `torch out=` runs the same
kernels into preallocated outputs. attnkit's forward is F.cross_entropy; its
backward is `_C.cross_entropy_backward`, the kernel autograd calls, which
recomputes the probabilities from the saved statistics.
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

IGNORE_INDEX = -100
MEAN = 1  # aten's code for reduction="mean"


def loss_bytes(direction: str, n: int, vocab: int) -> int:
    """Bytes cross-entropy must move in direction (see the module docstring)."""
    if direction == "forward":
        return 4 * n * vocab + 8 * n + 4 * n + 12 * n
    return 8 * n * vocab + 8 * n + 12 * n


def our_callables(logits_numpy, targets_numpy):
    """(forward, backward) callables for attnkit."""
    logits, targets = attnkit.from_numpy(logits_numpy), attnkit.from_numpy(targets_numpy)
    grad = attnkit.from_numpy(np.array(1.0, dtype=np.float32))._array
    _, statistics = _C.cross_entropy_forward(logits._array, targets._array, IGNORE_INDEX, 0.0, "mean")
    return (
        lambda: F.cross_entropy(logits, targets),
        lambda: _C.cross_entropy_backward(grad, logits._array, targets._array, statistics, IGNORE_INDEX, 0.0, "mean"),
    )


def torch_callables(torch, logits_numpy, targets_numpy):
    """(forward peers, backward peers), each a dict name -> callable."""
    aten = torch.ops.aten
    logits, targets = torch.from_numpy(logits_numpy), torch.from_numpy(targets_numpy)
    grad = torch.tensor(1.0)
    # What autograd saves: the log-probabilities and nll_loss's total weight.
    log_probabilities = torch.log_softmax(logits, 1)
    _, total_weight = aten.nll_loss_forward(log_probabilities, targets, None, MEAN, IGNORE_INDEX)
    # Preallocated outputs for the out= forms.
    log_probabilities_out, grad_log_probabilities_out = torch.empty_like(logits), torch.empty_like(logits)
    dlogits_out = torch.empty_like(logits)
    loss_out, total_weight_out = torch.empty(()), torch.empty(())

    def forward_out():
        aten._log_softmax.out(logits, 1, False, out=log_probabilities_out)
        aten.nll_loss_forward.output(
            log_probabilities_out, targets, None, MEAN, IGNORE_INDEX, output=loss_out, total_weight=total_weight_out
        )

    def backward():
        grad_log_probabilities = aten.nll_loss_backward(
            grad, log_probabilities, targets, None, MEAN, IGNORE_INDEX, total_weight
        )
        return aten._log_softmax_backward_data(grad_log_probabilities, log_probabilities, 1, torch.float32)

    def backward_out():
        aten.nll_loss_backward.grad_input(
            grad,
            log_probabilities,
            targets,
            None,
            MEAN,
            IGNORE_INDEX,
            total_weight,
            grad_input=grad_log_probabilities_out,
        )
        aten._log_softmax_backward_data.out(
            grad_log_probabilities_out, log_probabilities, 1, torch.float32, out=dlogits_out
        )

    return (
        {"torch": lambda: torch.nn.functional.cross_entropy(logits, targets), "torch out=": forward_out},
        {"torch": backward, "torch out=": backward_out},
    )


def measure_case(recorder, side: str, torch, vocab: int, n: int) -> None:
    """This side's rows of one vocabulary; its arrays are freed on return,
    before the next case allocates its own."""
    rng = np.random.default_rng(vocab)
    logits_numpy = rng.standard_normal((n, vocab), dtype=np.float32) * 2
    targets_numpy = rng.integers(0, vocab, n, dtype=np.int64)
    if side == "attnkit":
        forward, backward = ({"attnkit": fn} for fn in our_callables(logits_numpy, targets_numpy))
    else:
        forward, backward = torch_callables(torch, logits_numpy, targets_numpy)
    case = f"V={vocab}, {n} rows"
    for direction, callables, limit in (("forward", forward, "read"), ("backward", backward, "copy")):
        work = loss_bytes(direction, n, vocab)
        recorder.time(f"cross_entropy {direction}", case, callables, work=work, unit="GB/s", limit=limit)


def measure(recorder, side: str, torch, args) -> None:
    for vocab, n in cases(args):
        measure_case(recorder, side, torch, vocab, n)


def cases(args) -> list:
    """(V, rows): a GPT-2 vocabulary over ``--rows`` rows, a character-level
    one over ``--mib`` MiB of logits."""
    return [(50257, args.rows), (65, max(1, args.mib * common.MIB // (4 * 65)))]


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=2048, help="rows of the V = 50257 case (default: 2048, 393 MiB of logits)"
    )
    parser.add_argument(
        "--mib",
        type=int,
        default=common.beyond_l3_mib(128, 1),
        help="MiB of logits in the V = 65 case (default: the L3, at least 128)",
    )
    args = parser.parse_args()
    common.run(__file__, args, measure, title="Cross-entropy (float32 logits, int64 targets, mean reduction)")


if __name__ == "__main__":
    main()
