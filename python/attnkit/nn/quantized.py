"""``QuantizedLinear``: a Linear layer whose weight is int8 (attnkit.quantize)."""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .functional.quantized import quantize_int8
from .layers import Linear
from .module import Module
from .parameter import Parameter


class QuantizedLinear(Module):
    """``y = x @ (scales[:, None] * weight).T + bias`` (then the activation,
    as Linear's), for inference.

    ``weight``: int8 [out_features, in_features] and ``scales``: float32
    [out_features] (symmetric, one scale per output channel), both buffers;
    ``bias``: the float32 Parameter of the Linear it replaces, or None. Input
    and output are float32 as Linear's. Build one with ``from_linear`` or
    ``from_weight``; ``attnkit.quantize(model, "int8")`` swaps every Linear
    of a model for one. The weight is frozen: gradients reach the input and
    the bias only.
    """

    def __init__(self, weight: Tensor, scales: Tensor, bias: Tensor | None = None, activation: str | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.activation = activation
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        if bias is not None:
            self.bias = bias if isinstance(bias, Parameter) else Parameter(bias)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_weight(cls, weight: Tensor, bias: Tensor | None = None, activation: str | None = None):
        """Quantizes a float32 weight [out_features, in_features] (see
        ``attnkit.nn.functional.quantized.quantize_int8``)."""
        q, scales = quantize_int8(weight.detach())
        return cls(q, scales, bias, activation)

    @classmethod
    def from_linear(cls, linear: Linear):
        """The int8 twin of ``linear`` (its bias and activation kept as they are)."""
        if not isinstance(linear, Linear):
            raise TypeError(f"QuantizedLinear.from_linear: expected an nn.Linear, got {type(linear).__name__}")
        return cls.from_weight(linear.weight, linear.bias, linear.activation)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear_int8(x, self.weight, self.scales, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        return text
