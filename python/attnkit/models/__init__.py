"""Complete models: a config dataclass and a Module each, and
``from_pretrained`` for Hugging Face checkpoint directories (``hf``)."""

from .bert import BERT, BertConfig, BertOutput, mask_tokens
from .gpt import GPT, GPTConfig
from .llama import Llama, LlamaConfig
from .transformer import Transformer, TransformerConfig
from .vit import ViT, ViTConfig

from . import hf  # noqa: E402  isort: skip  (it registers the models above)
from .hf import from_pretrained  # noqa: E402  isort: skip
from .sentence_encoder import SentenceEncoder  # noqa: E402  isort: skip

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
    "ViT",
    "ViTConfig",
    "from_pretrained",
    "SentenceEncoder",
    "hf",
]
