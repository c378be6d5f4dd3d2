"""Complete models: a config dataclass and a Module each, and
``from_pretrained`` for Hugging Face checkpoint directories (``hf``)."""

from . import hf
from .bert import BERT, BertConfig, BertOutput, mask_tokens
from .gpt import GPT, GPTConfig
from .hf import from_pretrained
from .llama import Llama, LlamaConfig
from .sentence_encoder import SentenceEncoder
from .transformer import Transformer, TransformerConfig
from .vit import ViT, ViTConfig

# Each Hugging Face architecture registers its tables on import (hf/ itself
# holds only the loader, which the model classes use for save_pretrained).
from .hf import bert as _hf_bert  # noqa: E402, F401  isort: skip
from .hf import gpt2 as _hf_gpt2  # noqa: E402, F401  isort: skip
from .hf import llama as _hf_llama  # noqa: E402, F401  isort: skip
from .hf import marian as _hf_marian  # noqa: E402, F401  isort: skip
from .hf import moe as _hf_moe  # noqa: E402, F401  isort: skip
from .hf import vit as _hf_vit  # noqa: E402, F401  isort: skip

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
