"""Linear: a thin Module around the fused linear op; the defaults
(initialization, parameter names) are PyTorch's, so checkpoints map one to one."""

from __future__ import annotations

import math

from ..ops import checks
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import empty_parameter

_LINEAR_ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh")


class Linear(Module):
    """``y = x @ weight.T + bias``, optionally followed by an activation fused
    into the same kernel (an attnkit addition: "relu", "gelu", "gelu_tanh").

    ``weight``: float32 [out_features, in_features]; ``bias``: [out_features]
    or None with ``bias=False``. Input [..., in_features], output
    [..., out_features].

    Initialization is PyTorch's default: every weight and bias entry uniform
    in [-1/sqrt(in_features), 1/sqrt(in_features)) (the weight's bound is
    what kaiming_uniform_ with a = sqrt(5) reduces to), drawn from the
    default generator (``attnkit.manual_seed``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str | None = None) -> None:
        super().__init__()
        self.in_features = checks.positive_int("Linear", "in_features", in_features, allow_zero=True)
        self.out_features = checks.positive_int("Linear", "out_features", out_features, allow_zero=True)
        checks.flag("Linear", "bias", bias)
        if activation not in _LINEAR_ACTIVATIONS:
            raise ValueError(
                f"Linear: argument 'activation' expected None, 'relu', 'gelu' or 'gelu_tanh', got {activation!r}"
            )
        self.activation = activation
        self.weight = empty_parameter((self.out_features, self.in_features))
        if bias:
            self.bias = empty_parameter((self.out_features,))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @classmethod
    def _sharing_weights_of(cls, source: Linear) -> Linear:
        """A ``cls`` module around ``source``'s own weight and bias (shared,
        not copied), with its sizes, activation and training flag. Linear's
        ``__init__`` is skipped: it would allocate and draw new weights."""
        module = cls.__new__(cls)
        Module.__init__(module)
        module.in_features, module.out_features = source.in_features, source.out_features
        module.activation = source.activation
        module.weight = source.weight
        if source.bias is None:
            module.register_parameter("bias", None)
        else:
            module.bias = source.bias
        module.training = source.training
        return module

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        if self.activation is not None:
            text += f", activation={self.activation!r}"
        return text
