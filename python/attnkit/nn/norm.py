"""LayerNorm and RMSNorm: thin Modules around the fused norm ops; the
defaults (eps, parameter names) are PyTorch's, so checkpoints map one to one."""

from __future__ import annotations

from ..ops import checks
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import empty_parameter


class LayerNorm(Module):
    """Ba et al. (2016): normalizes over the last dimensions
    (``normalized_shape``) to zero mean and unit variance (the biased
    variance, plus ``eps``), then scales by ``weight`` and shifts by ``bias``
    (initialized to ones and zeros). ``elementwise_affine=False`` drops
    both; ``bias=False`` keeps only the weight (as GPT-style models without
    biases use). One fused kernel, ``F.layer_norm``."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.normalized_shape = tuple(checks.normalized_shape("LayerNorm", normalized_shape))
        self.eps = eps  # F.layer_norm checks it
        self.elementwise_affine = checks.flag("LayerNorm", "elementwise_affine", elementwise_affine)
        checks.flag("LayerNorm", "bias", bias)
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape)
            if bias:
                self.bias = empty_parameter(self.normalized_shape)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def add_forward(self, x: Tensor, residual: Tensor) -> tuple:
        """``(x + residual, self(x + residual))`` in one fused pass
        (``F.add_layer_norm``), the same bits as the add and then the norm:
        a pre-LN block's residual add and the next sublayer's LayerNorm."""
        return F.add_layer_norm(x, residual, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}" + (
            "" if not self.elementwise_affine or self.bias is not None else ", bias=False"
        )


class RMSNorm(Module):
    """Zhang and Sennrich (2019): ``x / sqrt(mean(x^2) + eps) * weight`` over
    the last dimensions (``normalized_shape``); ``weight`` starts at ones.
    ``eps=None`` takes float32's machine epsilon, as PyTorch. One fused
    kernel, ``F.rms_norm``."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.normalized_shape = tuple(checks.normalized_shape("RMSNorm", normalized_shape))
        self.eps = eps  # F.rms_norm checks it
        self.elementwise_affine = checks.flag("RMSNorm", "elementwise_affine", elementwise_affine)
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape)
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def add_forward(self, x: Tensor, residual: Tensor) -> tuple:
        """``(x + residual, self(x + residual))``, the interface of
        ``LayerNorm.add_forward`` (pre-norm blocks call either); here the
        add and the norm are two ops."""
        total = x + residual
        return total, self(total)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
