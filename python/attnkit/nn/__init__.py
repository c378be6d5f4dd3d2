"""Neural-network building blocks. ``attnkit.nn.functional`` (imported as F)
holds the differentiable ops; ``Module`` and the layers assemble them."""

from . import functional, init, parallel, utils
from .attention import KVCache, MultiHeadAttention
from .container import ModuleDict, ModuleList, Sequential
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .lora import LoRALinear
from .module import IncompatibleKeys, Module
from .moe import MoEFeedForward
from .norm import LayerNorm, RMSNorm
from .parameter import Parameter
from .position import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from .quantized import QuantizedLinear
from .transformer import (
    FeedForward,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "functional",
    "init",
    "utils",
    "parallel",
    "Module",
    "IncompatibleKeys",
    "Parameter",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Linear",
    "LoRALinear",
    "QuantizedLinear",
    "Embedding",
    "LayerNorm",
    "RMSNorm",
    "Dropout",
    "KVCache",
    "MultiHeadAttention",
    "FeedForward",
    "MoEFeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
]
