"""Dropout from the Philox generator (see attnkit.random)."""

from __future__ import annotations

import numbers

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...random import _generator_or_default
from ...tensor import Tensor


class _Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, seed, offset):
        # The mask is not kept: backward draws the same stream again, which
        # costs no memory and gives the CUDA backend the same mask from the
        # same counters.
        ctx.stream = (p, seed, offset)
        return _C.dropout_forward(x._array, p, seed, offset)

    @staticmethod
    def backward(ctx, grad):
        p, seed, offset = ctx.stream
        return _C.dropout_backward(grad, p, seed, offset), None, None, None


class _DropAll(Function):
    @staticmethod
    def forward(ctx, x):
        return _C.zeros(list(x.shape), "float32")

    @staticmethod
    def backward(ctx, grad):
        return _C.zeros(list(grad.shape), "float32")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, *, generator=None) -> Tensor:
    """Zeroes each element with probability ``p`` and scales the others by
    ``1 / (1 - p)``, so the expected value is unchanged. float32, any shape.
    Differentiable.

    The mask comes from the next stream of ``generator`` (default: the
    process-wide one, ``attnkit.manual_seed``): it depends only on (seed,
    offset, element index), so it is the same for any thread count and on
    every rerun. It is never stored: backward regenerates it from the saved
    (seed, offset). A dropped element is exactly 0, also where the input is
    inf or NaN.

    ``training=False`` or ``p=0`` returns ``input`` itself (no copy, no
    random numbers drawn); ``p=1`` returns zeros. ``p`` outside [0, 1] raises
    ValueError.
    """
    check_tensor("dropout", "input", input)
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"dropout: argument 'p' expected a float, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # NaN fails too
        raise ValueError(f"dropout: argument 'p' expected a probability in [0, 1], got {p}")
    if not isinstance(training, bool):
        raise TypeError(f"dropout: argument 'training' expected a bool, got {type(training).__name__}")
    generator = _generator_or_default("dropout", generator)
    if input.dtype.name not in ("float32", "bfloat16"):
        raise TypeError(f"dropout: argument 'input' expected float32 or bfloat16, got {input.dtype}")
    if not training or p == 0.0:
        return input
    if input.dtype.name != "float32":
        # bfloat16 tensors run inference only (docs/design.md, "bfloat16 inference")
        raise TypeError(
            f"dropout: argument 'input' expected float32 when training with p > 0, got {input.dtype} "
            f"(bfloat16 models run inference only: call model.eval(), or train in float32 under attnkit.autocast)"
        )
    if p == 1.0:
        return _DropAll.apply(input)
    seed, offset = generator.next_stream()
    return _Dropout.apply(input, p, seed, offset)
