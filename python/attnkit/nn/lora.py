"""LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
Models"): a frozen Linear plus a trainable low-rank update,
``y = x W^T + b + (alpha / r) * dropout(x) A^T B^T`` with A [r, in] and
B [out, r]; B starts at zero, so training starts from the base model.

A fused projection (the q, k and v rows of ``qkv_proj``) may carry one
adapter per row range (``slices``), as a checkpoint with separate q, k and
v projections adapts them; see ``LoRALinear``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._tensor_data import float64_values, values_view
from ..ops import checks
from ..tensor import Tensor, zeros
from . import functional as F
from . import init
from .linear import Linear
from .parameter import empty_parameter


def _check_slices(slices, out_features: int) -> tuple:
    if slices is None:
        return ((0, out_features),)
    try:
        pairs = tuple((int(start), int(stop)) for start, stop in slices)
    except (TypeError, ValueError):
        raise TypeError(f"LoRALinear: argument 'slices' expected (start, stop) row ranges, got {slices!r}") from None
    previous = 0
    for start, stop in pairs:
        if not previous <= start < stop <= out_features:
            raise ValueError(
                f"LoRALinear: argument 'slices' expected increasing, non-overlapping row ranges within "
                f"[0, {out_features}), got {list(pairs)}"
            )
        previous = stop
    if not pairs:
        raise ValueError("LoRALinear: argument 'slices' expected at least one row range, got none")
    return pairs


class LoRALinear(Linear):
    """A ``Linear`` (``weight``, ``bias``, fused ``activation``, as Linear)
    with a low-rank update: ``activation(x W^T + b + scaling * delta(x))``,
    ``scaling = alpha / r`` (``alpha / sqrt(r)`` with ``rslora=True``).

    - ``r`` (rank, >= 1), ``alpha`` (> 0), ``dropout`` (on the update's
      input only, in training mode).
    - ``slices``: row ranges ``[(start, stop), ...]`` of the output that
      each get an adapter of their own (default: one over every row). Slice
      s reads ``lora_A`` rows ``s*r .. (s+1)*r`` and its own rows of
      ``lora_B``: ``delta(x)[start:stop] = B_s A_s x``; rows outside every
      slice are not adapted.
    - Parameters: ``lora_A`` [len(slices) * r, in_features], initialized as
      a Linear's weight (uniform in +-1/sqrt(in_features)), and ``lora_B``
      [rows in the slices, r], zeros.

    ``merge()`` adds the update into ``weight`` (rounded once, from a
    float64 product) so inference runs one GEMM; ``unmerge()`` subtracts it
    again. While merged the forward is the base's alone.

    ``LoRALinear.from_linear(linear, ...)`` wraps an existing Linear,
    sharing its weight and bias (what ``attnkit.lora.apply`` uses).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        bias: bool = True,
        activation: str | None = None,
        *,
        slices=None,
        rslora: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, activation=activation)
        self._setup_adapter(r, alpha, dropout, slices, rslora)

    def _setup_adapter(self, r, alpha, dropout, slices, rslora) -> None:
        self.r = checks.positive_int("LoRALinear", "r", r)
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not 0 < alpha < math.inf:
            raise ValueError(f"LoRALinear: argument 'alpha' expected a positive finite number, got {alpha!r}")
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRALinear: argument 'dropout' expected a probability in [0, 1), got {dropout!r}")
        if not isinstance(rslora, bool):
            raise TypeError(f"LoRALinear: argument 'rslora' expected a bool, got {type(rslora).__name__}")
        self.alpha = float(alpha)
        self.lora_dropout = float(dropout)
        self.rslora = rslora
        self.slices = _check_slices(slices, self.out_features)
        self.scaling = self.alpha / (math.sqrt(self.r) if rslora else self.r)
        adapted_rows = sum(stop - start for start, stop in self.slices)
        self.lora_A = empty_parameter((len(self.slices) * self.r, self.in_features))
        self.lora_B = empty_parameter((adapted_rows, self.r))
        self.merged = False
        self.reset_adapter()

    @classmethod
    def from_linear(
        cls, linear: Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, *, slices=None, rslora=False
    ) -> LoRALinear:
        """A LoRALinear around ``linear``'s own weight and bias (shared, not
        copied), keeping their requires_grad as they are."""
        if not isinstance(linear, Linear) or isinstance(linear, LoRALinear):
            raise TypeError(
                f"LoRALinear.from_linear: argument 'linear' expected an nn.Linear without an adapter, "
                f"got {type(linear).__name__}"
            )
        module = cls._sharing_weights_of(linear)
        module._setup_adapter(r, alpha, dropout, slices, rslora)
        return module

    def reset_adapter(self) -> None:
        """A as a Linear's weight is initialized, B zeros (PEFT's default):
        the update starts at exactly zero."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        init.uniform_(self.lora_A, -bound, bound)
        init.zeros_(self.lora_B)

    def delta_weight(self) -> np.ndarray:
        """The update ``scaling * B A`` as a float64 [out, in] array (zero
        rows outside the slices)."""
        a = float64_values(self.lora_A)
        b = float64_values(self.lora_B)
        delta = np.zeros((self.out_features, self.in_features))
        row = 0
        for s, (start, stop) in enumerate(self.slices):
            delta[start:stop] = b[row : row + stop - start] @ a[s * self.r : (s + 1) * self.r]
            row += stop - start
        return self.scaling * delta

    def merge(self) -> None:
        """Adds the update into ``weight`` (rounded once to float32)."""
        if self.merged:
            raise RuntimeError("LoRALinear.merge: the adapter is merged already")
        weight = values_view(self.weight)
        weight[...] = (weight.astype(np.float64) + self.delta_weight()).astype(np.float32)
        self.merged = True

    def unmerge(self) -> None:
        """Subtracts the update from ``weight`` again: the base weight back,
        up to the rounding of the two steps (one unit in the last place)."""
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge: the adapter is not merged")
        weight = values_view(self.weight)
        weight[...] = (weight.astype(np.float64) - self.delta_weight()).astype(np.float32)
        self.merged = False

    def _update(self, x: Tensor) -> Tensor:
        """scaling * delta(x), [..., out_features]."""
        hidden = F.linear(F.dropout(x, self.lora_dropout, self.training), self.lora_A) * self.scaling
        if len(self.slices) == 1 and self.slices[0] == (0, self.out_features):
            return F.linear(hidden, self.lora_B)
        pieces, row, previous = [], 0, 0
        lead = list(x.shape[:-1])
        for s, (start, stop) in enumerate(self.slices):
            if start > previous:
                pieces.append(zeros(*lead, start - previous))
            part = F.narrow(hidden, hidden.ndim - 1, s * self.r, self.r)
            pieces.append(F.linear(part, F.narrow(self.lora_B, 0, row, stop - start)))
            row += stop - start
            previous = stop
        if previous < self.out_features:
            pieces.append(zeros(*lead, self.out_features - previous))
        return F.cat(pieces, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return super().forward(x)
        pre = F.linear(x, self.weight, self.bias) + self._update(x)
        if self.activation is None:
            return pre
        if self.activation == "relu":
            return F.relu(pre)
        return F.gelu(pre, "tanh" if self.activation == "gelu_tanh" else "none")

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"
        if self.lora_dropout:
            text += f", dropout={self.lora_dropout}"
        if self.slices != ((0, self.out_features),):
            text += f", slices={list(self.slices)}"
        if self.merged:
            text += ", merged"
        return text


__all__ = ["LoRALinear"]
