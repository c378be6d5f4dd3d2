"""``QuantizedLinear``: a Linear layer whose weight is int8 (attnkit.quantize)."""

from __future__ import annotations

from ..autograd import is_grad_enabled
from ..tensor import Tensor
from . import functional as F
from .functional import quantized as F_quantized
from .functional.quantized import quantize_int8
from .linear import Linear
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

    ``dynamic_activations=True`` (``enable_dynamic_activations()``): on
    more than 16 rows of input without gradients, and where the CPU tier has
    int8 dot products (AVX512-VNNI), the activations are quantized per row on
    the fly and multiplied in int8 (``F.linear_int8_dynamic``): faster
    prefill and batched work at a further loss of accuracy, as ONNX
    Runtime's dynamic quantization. Elsewhere the int8-weight path runs.
    """

    # Up to this many rows the int8-weight decode path reads the weight once
    # and is exact to the dequantized weight: dynamic quantization would not
    # be faster there.
    DYNAMIC_MIN_ROWS = 17

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
        self.dynamic_activations = False

    def enable_dynamic_activations(self) -> QuantizedLinear:
        """Turns on dynamic activation quantization (see the class), packing
        the weight for it once (a non-persistent buffer: state_dicts are
        unchanged). Returns self."""
        packed, row_sums = F_quantized.pack_int8_dynamic(self.weight)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("row_sums", row_sums, persistent=False)
        self.dynamic_activations = True
        return self

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
        if (
            self.dynamic_activations
            and isinstance(x, Tensor)
            and x.ndim >= 1
            and x.numel() >= self.DYNAMIC_MIN_ROWS * self.in_features > 0
            and not (is_grad_enabled() and (x.requires_grad or (self.bias is not None and self.bias.requires_grad)))
            and F_quantized.int8_dynamic_available()
        ):
            return F_quantized.linear_int8_dynamic(
                x, self.packed_weight, self.row_sums, self.scales, self.bias, activation=self.activation
            )
        return F.linear_int8(x, self.weight, self.scales, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        if self.dynamic_activations:
            text += ", dynamic_activations=True"
        return text
