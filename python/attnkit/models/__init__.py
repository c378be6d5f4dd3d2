"""Complete models: a config dataclass and a Module each."""

from .gpt import GPT, GPTConfig
from .transformer import Transformer, TransformerConfig

__all__ = ["GPT", "GPTConfig", "Transformer", "TransformerConfig"]
