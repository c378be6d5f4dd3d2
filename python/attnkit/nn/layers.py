"""The basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout. Each is
a thin Module around one fused functional op; the defaults (initialization,
eps, parameter names) are PyTorch's, so checkpoints map one to one."""

from __future__ import annotations

import math
import numbers

from .. import _C
from .._tensor_data import values_view
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional.embedding import resolve_padding_idx
from .module import Module
from .parameter import Parameter

_LINEAR_ACTIVATIONS = (None, "relu", "gelu", "gelu_tanh")


def _positive_int(op: str, argument: str, value, allow_zero: bool = False) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value < 2**63:  # sizes are int64 in the native layer
        raise ValueError(
            f"{op}: argument '{argument}' expected an integer in [{0 if allow_zero else 1}, 2**63), got {value}"
        )
    return int(value)


def _flag(op: str, argument: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected a bool, got {type(value).__name__}")
    return value


def _empty_parameter(shape) -> Parameter:
    return Parameter(Tensor._wrap(_C.empty(list(shape), "float32")))


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
        self.in_features = _positive_int("Linear", "in_features", in_features, allow_zero=True)
        self.out_features = _positive_int("Linear", "out_features", out_features, allow_zero=True)
        _flag("Linear", "bias", bias)
        if activation not in _LINEAR_ACTIVATIONS:
            raise ValueError(
                f"Linear: argument 'activation' expected None, 'relu', 'gelu' or 'gelu_tanh', got {activation!r}"
            )
        self.activation = activation
        self.weight = _empty_parameter((self.out_features, self.in_features))
        if bias:
            self.bias = _empty_parameter((self.out_features,))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

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


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``,
    looked up by int32/int64 ids of any shape (ids outside the table raise
    ValueError). ``weight``: float32 [num_embeddings, embedding_dim],
    initialized N(0, 1) as in PyTorch, from the default generator.

    ``padding_idx`` (as PyTorch's; negative counts from the end): that row
    starts as zeros and receives no gradient, so it stays as it is through
    training (a padding token's vector).
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *, _weight: Tensor | None = None
    ) -> None:
        super().__init__()
        self.num_embeddings = _positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("Embedding", "embedding_dim", embedding_dim)
        self.padding_idx = resolve_padding_idx("Embedding", padding_idx, self.num_embeddings)
        if _weight is None:
            self.weight = _empty_parameter((self.num_embeddings, self.embedding_dim))
            self.reset_parameters()
        else:
            if not isinstance(_weight, Tensor) or tuple(_weight.shape) != (num_embeddings, embedding_dim):
                got = tuple(_weight.shape) if isinstance(_weight, Tensor) else type(_weight).__name__
                raise ValueError(
                    f"Embedding: argument '_weight' expected a tensor of shape "
                    f"({num_embeddings}, {embedding_dim}), got {got}"
                )
            self.weight = _weight if isinstance(_weight, Parameter) else Parameter(_weight)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None) -> Embedding:
        """An Embedding whose weight is ``embeddings`` (a 2-D float32 tensor,
        shared, not copied); ``freeze=True`` keeps it out of training. The
        ``padding_idx`` row is kept as given (not zeroed), as in PyTorch, and
        gets no gradient."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            got = embeddings.shape if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"Embedding.from_pretrained: argument 'embeddings' expected a 2-D tensor, got {got}")
        module = cls(embeddings.shape[0], embeddings.shape[1], padding_idx, _weight=Parameter(embeddings))
        module.weight.requires_grad_(not _flag("Embedding.from_pretrained", "freeze", freeze))
        return module

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            values_view(self.weight)[self.padding_idx] = 0.0

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text


def _normalized_shape(op: str, normalized_shape) -> tuple:
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    try:
        shape = tuple(normalized_shape)
    except TypeError:
        shape = None
    if not shape or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and 1 <= d < 2**63 for d in shape
    ):
        raise ValueError(
            f"{op}: argument 'normalized_shape' expected a positive int below 2**63 or a tuple of them, "
            f"got {normalized_shape!r}"
        )
    return tuple(int(d) for d in shape)


def _eps(op: str, eps) -> float:
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool):
        raise TypeError(f"{op}: argument 'eps' expected a float, got {type(eps).__name__}")
    if not eps >= 0:
        raise ValueError(f"{op}: argument 'eps' expected a non-negative number, got {eps}")
    return float(eps)


class LayerNorm(Module):
    """Ba et al. (2016): normalizes over the last dimensions
    (``normalized_shape``) to zero mean and unit variance (the biased
    variance, plus ``eps``), then scales by ``weight`` and shifts by ``bias``
    (initialized to ones and zeros). ``elementwise_affine=False`` drops
    both; ``bias=False`` keeps only the weight (as GPT-style models without
    biases use). One fused kernel, ``F.layer_norm``."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.normalized_shape = _normalized_shape("LayerNorm", normalized_shape)
        self.eps = _eps("LayerNorm", eps)
        self.elementwise_affine = _flag("LayerNorm", "elementwise_affine", elementwise_affine)
        _flag("LayerNorm", "bias", bias)
        if elementwise_affine:
            self.weight = _empty_parameter(self.normalized_shape)
            if bias:
                self.bias = _empty_parameter(self.normalized_shape)
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
        self.normalized_shape = _normalized_shape("RMSNorm", normalized_shape)
        self.eps = None if eps is None else _eps("RMSNorm", eps)
        self.elementwise_affine = _flag("RMSNorm", "elementwise_affine", elementwise_affine)
        if elementwise_affine:
            self.weight = _empty_parameter(self.normalized_shape)
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


__all__ = ["Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout"]
