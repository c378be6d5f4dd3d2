"""Dropout as a Module (``F.dropout`` in training mode, identity in eval)."""

from __future__ import annotations

import numbers

from ..tensor import Tensor
from . import functional as F
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by
    1 / (1 - p) in training mode; passes the input through in eval mode.
    The mask comes from the default Philox generator (``F.dropout``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(p, numbers.Real) or isinstance(p, bool):
            raise TypeError(f"Dropout: argument 'p' expected a float, got {type(p).__name__}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: argument 'p' expected a probability in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
