"""Complete models: a config dataclass and a Module each."""

from .bert import BERT, BertConfig, BertOutput, mask_tokens
from .gpt import GPT, GPTConfig

__all__ = ["BERT", "BertConfig", "BertOutput", "mask_tokens", "GPT", "GPTConfig"]
