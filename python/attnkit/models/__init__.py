"""Complete models: a config dataclass and a Module each."""

from .bert import BERT, BertConfig, BertOutput, mask_tokens
from .gpt import GPT, GPTConfig
from .llama import Llama, LlamaConfig
from .transformer import Transformer, TransformerConfig

__all__ = [
    "BERT",
    "BertConfig",
    "BertOutput",
    "mask_tokens",
    "GPT",
    "GPTConfig",
    "Llama",
    "LlamaConfig",
    "Transformer",
    "TransformerConfig",
]
