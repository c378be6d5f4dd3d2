"""LayerNorm, RMSNorm and the fused residual add + LayerNorm, forward and
backward throughput (GB/s) against PyTorch and against the machine's memory
bandwidth, at each thread count, over rows of 768 and 4096 on arrays far above
the L3.

    python bench/bench_norm.py [--threads 1 2] [--mib MIB] [--rounds 3] [--widths 768 4096] [--no-torch]

Bytes counted are those the op must move, for N rows of width C (float32):
- layer_norm forward: reads x, writes y (8 NC), writes the saved mean and
  1/std (8 N), reads weight and bias (8 C); limit: copy (1 read, 1 write).
- layer_norm backward: reads dy and x, writes dx (12 NC), reads mean and 1/std
  (8 N), reads weight, writes dweight and dbias (12 C); limit: triad (2 reads,
  1 write).
- rms_norm forward: reads x, writes y (8 NC), writes 1/rms (4 N), reads weight
  (4 C); limit: copy. Backward: reads dy and x, writes dx (12 NC), reads 1/rms
  (4 N), reads weight, writes dweight (8 C); limit: triad.
- add_layer_norm forward: reads x and residual, writes sum and y (16 NC), plus
  the statistics and parameters as layer_norm; limit: copy (the same 1:1 mix of
  reads and writes). Backward: reads the gradients of both outputs and the
  saved sum, writes dx (16 NC), plus the statistics and parameters as
  layer_norm; limit: triad, the probe pass nearest its 3 reads to 1 write.

PyTorch: `torch` is what a user gets, with fresh outputs every call:
F.layer_norm (aten's native_layer_norm_backward for backward); F.rms_norm
(backward through autograd, since PyTorch's CPU RMSNorm is a composition of
elementwise ops); for add_layer_norm, x + residual then F.layer_norm (backward:
native_layer_norm_backward, then the sum's own gradient added, as autograd
does). `torch out=` writes into preallocated outputs, the kernels alone (there
is none for RMSNorm). attnkit's forward is the F.* function as a user calls it;
its backward is the `_C` kernel autograd calls. Weight and bias are present and
their gradients computed on both sides, as in a Transformer block.
"""

from __future__ import annotations

import common
import numpy as np

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

LAYER_NORM_EPS = 1e-5
RMS_NORM_EPS = 1e-6


def norm_bytes(op: str, direction: str, n: int, c: int) -> int:
    """Bytes op must move in direction (see the module docstring)."""
    elements = n * c
    table = {
        ("layer_norm", "forward"): 8 * elements + 8 * n + 8 * c,
        ("layer_norm", "backward"): 12 * elements + 8 * n + 12 * c,
        ("rms_norm", "forward"): 8 * elements + 4 * n + 4 * c,
        ("rms_norm", "backward"): 12 * elements + 4 * n + 8 * c,
        ("add_layer_norm", "forward"): 16 * elements + 8 * n + 8 * c,
        ("add_layer_norm", "backward"): 16 * elements + 8 * n + 12 * c,
    }
    return table[(op, direction)]


def our_callables(x_numpy, residual_numpy, dy_numpy, grad_sum_numpy, weight_numpy, bias_numpy):
    """op -> (forward callable, backward callable) for attnkit."""
    c = x_numpy.shape[1]
    x, residual = attnkit.from_numpy(x_numpy), attnkit.from_numpy(residual_numpy)
    weight, bias = attnkit.from_numpy(weight_numpy), attnkit.from_numpy(bias_numpy)
    dy, grad_sum = attnkit.from_numpy(dy_numpy)._array, attnkit.from_numpy(grad_sum_numpy)._array
    # The backward kernels' saved inputs, from one forward each.
    _, mean, rstd = _C.layer_norm_forward(x._array, [c], weight._array, bias._array, LAYER_NORM_EPS)
    _, rms_rstd = _C.rms_norm_forward(x._array, [c], weight._array, RMS_NORM_EPS)
    total, _, add_mean, add_rstd = _C.add_layer_norm_forward(
        x._array, residual._array, [c], weight._array, bias._array, LAYER_NORM_EPS
    )
    return {
        "layer_norm": (
            lambda: F.layer_norm(x, (c,), weight, bias, LAYER_NORM_EPS),
            lambda: _C.layer_norm_backward(dy, x._array, weight._array, mean, rstd, LAYER_NORM_EPS, True, True),
        ),
        "rms_norm": (
            lambda: F.rms_norm(x, (c,), weight, RMS_NORM_EPS),
            lambda: _C.rms_norm_backward(dy, x._array, weight._array, rms_rstd, RMS_NORM_EPS, True),
        ),
        "add_layer_norm": (
            lambda: F.add_layer_norm(x, residual, (c,), weight, bias, LAYER_NORM_EPS),
            lambda: _C.add_layer_norm_backward(
                grad_sum, dy, total, weight._array, add_mean, add_rstd, LAYER_NORM_EPS, True, True
            ),
        ),
    }


def torch_callables(torch, x_numpy, residual_numpy, dy_numpy, grad_sum_numpy, weight_numpy, bias_numpy):
    """op -> (forward peers, backward peers), each a dict name -> callable."""
    aten = torch.ops.aten
    functional = torch.nn.functional
    c = x_numpy.shape[1]
    x, residual = torch.from_numpy(x_numpy), torch.from_numpy(residual_numpy)
    dy, grad_sum = torch.from_numpy(dy_numpy), torch.from_numpy(grad_sum_numpy)
    weight, bias = torch.from_numpy(weight_numpy), torch.from_numpy(bias_numpy)
    all_grads = [True, True, True]
    _, mean, rstd = aten.native_layer_norm(x, [c], weight, bias, LAYER_NORM_EPS)
    total = x + residual
    _, add_mean, add_rstd = aten.native_layer_norm(total, [c], weight, bias, LAYER_NORM_EPS)
    # Preallocated outputs for the out= forms.
    y_out, sum_out, dx_out = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    mean_out, rstd_out = torch.empty_like(mean), torch.empty_like(rstd)
    dweight_out, dbias_out = torch.empty_like(weight), torch.empty_like(bias)

    def add_layer_norm_out():
        torch.add(x, residual, out=sum_out)
        aten.native_layer_norm.out(sum_out, [c], weight, bias, LAYER_NORM_EPS, out0=y_out, out1=mean_out, out2=rstd_out)

    def add_layer_norm_backward():
        dx, dweight, dbias = aten.native_layer_norm_backward(
            dy, total, [c], add_mean, add_rstd, weight, bias, all_grads
        )
        return dx + grad_sum, dweight, dbias

    def add_layer_norm_backward_out():
        aten.native_layer_norm_backward.out(
            dy, total, [c], add_mean, add_rstd, weight, bias, all_grads, out0=dx_out, out1=dweight_out, out2=dbias_out
        )
        dx_out.add_(grad_sum)

    peers = {
        "layer_norm": (
            {
                "torch": lambda: functional.layer_norm(x, (c,), weight, bias, LAYER_NORM_EPS),
                "torch out=": lambda: aten.native_layer_norm.out(
                    x, [c], weight, bias, LAYER_NORM_EPS, out0=y_out, out1=mean_out, out2=rstd_out
                ),
            },
            {
                "torch": lambda: aten.native_layer_norm_backward(dy, x, [c], mean, rstd, weight, bias, all_grads),
                "torch out=": lambda: aten.native_layer_norm_backward.out(
                    dy, x, [c], mean, rstd, weight, bias, all_grads, out0=dx_out, out1=dweight_out, out2=dbias_out
                ),
            },
        ),
        "add_layer_norm": (
            {
                "torch": lambda: functional.layer_norm(x + residual, (c,), weight, bias, LAYER_NORM_EPS),
                "torch out=": add_layer_norm_out,
            },
            {"torch": add_layer_norm_backward, "torch out=": add_layer_norm_backward_out},
        ),
    }
    if hasattr(functional, "rms_norm"):
        # One graph, kept, so that each timed call is the backward alone.
        x_graph, weight_graph = x.clone().requires_grad_(), weight.clone().requires_grad_()
        y_graph = functional.rms_norm(x_graph, (c,), weight_graph, RMS_NORM_EPS)
        peers["rms_norm"] = (
            {"torch": lambda: functional.rms_norm(x, (c,), weight, RMS_NORM_EPS)},
            {"torch": lambda: torch.autograd.grad(y_graph, (x_graph, weight_graph), dy, retain_graph=True)},
        )
    return peers


def measure_width(recorder, side: str, torch, width: int, args) -> None:
    """This side's rows of one width; its arrays are freed on return, before
    the next width allocates its own."""
    n = max(1, args.mib * common.MIB // (4 * width))
    rng = np.random.default_rng(width)
    inputs = [rng.standard_normal((n, width), dtype=np.float32) for _ in range(4)]  # x, residual, dy, grad_sum
    inputs += [rng.standard_normal(width, dtype=np.float32) for _ in range(2)]  # weight, bias
    if side == "attnkit":
        ops = {op: ({"attnkit": fwd}, {"attnkit": bwd}) for op, (fwd, bwd) in our_callables(*inputs).items()}
    else:
        ops = torch_callables(torch, *inputs)
    case = f"C={width}, {n} rows"
    for op, directions in ops.items():
        for direction, callables, limit in zip(("forward", "backward"), directions, ("copy", "triad")):
            work = norm_bytes(op, direction, n, width)
            recorder.time(f"{op} {direction}", case, callables, work=work, unit="GB/s", limit=limit)


measure = common.measure_each_width(measure_width)


def main() -> None:
    parser = common.argument_parser(__doc__.splitlines()[0])
    common.add_row_flags(parser, [768, 4096], "the normalized dimension")
    args = parser.parse_args()
    title = f"Normalizations over the last dimension, float32 ({args.mib} MiB per [N, C] array)"
    common.run(__file__, args, measure, title=title)


if __name__ == "__main__":
    main()
