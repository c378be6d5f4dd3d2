"""Complete models: a config dataclass and a Module each."""

from .gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
