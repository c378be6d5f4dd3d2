"""Losses: cross-entropy with log-softmax fused in."""

from __future__ import annotations

import numbers

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor


class _CrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, targets, ignore_index, label_smoothing, reduction):
        loss, statistics = _C.cross_entropy_forward(
            logits._array, targets._array, ignore_index, label_smoothing, reduction
        )
        # Per row: the max logit and the sum of exp(logit - max) as two floats,
        # 12 bytes; the probabilities are recomputed from them, never stored.
        ctx.save_for_backward(logits._array, targets._array, statistics)
        ctx.options = (ignore_index, label_smoothing, reduction)
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, targets, statistics = ctx.saved
        dlogits = _C.cross_entropy_backward(grad, logits, targets, statistics, *ctx.options)
        return dlogits, None, None, None, None


def cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = -100, label_smoothing: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy between ``softmax(logits)`` and class targets, with the
    log-softmax fused in: each row is read once for its max and its sum of
    exponentials, so logits up to float32's range are stable.

    ``logits`` float32 ``[N, V]``; ``targets`` int64 or int32 ``[N]``, each in
    ``[0, V)`` or equal to ``ignore_index`` (anything else is a ValueError that
    names the value). ``label_smoothing`` in [0, 1] mixes the one-hot target
    with the uniform distribution, as PyTorch: ``q = (1 - e) onehot + e / V``.
    ``reduction``: ``"mean"`` over the rows whose target is not ignored (NaN
    when all are, as PyTorch), ``"sum"``, or ``"none"`` (a float32 ``[N]``
    loss, 0 on ignored rows). Differentiable in logits; backward writes the
    gradient straight into one ``[N, V]`` buffer."""
    check_tensor("cross_entropy", "logits", logits)
    check_tensor("cross_entropy", "targets", targets)
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"cross_entropy: argument 'ignore_index' expected an int, got {type(ignore_index).__name__}")
    if not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool):
        raise TypeError(
            f"cross_entropy: argument 'label_smoothing' expected a number, got {type(label_smoothing).__name__}"
        )
    if not isinstance(reduction, str):
        raise TypeError(f"cross_entropy: argument 'reduction' expected 'none', 'mean' or 'sum', got {reduction!r}")
    return _CrossEntropy.apply(logits, targets, int(ignore_index), float(label_smoothing), reduction)
