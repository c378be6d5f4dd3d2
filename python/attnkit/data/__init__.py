"""Data: tokenizers (attnkit's own, and pretrained models' ``Tokenizer``),
the bundled tiny Shakespeare corpus and nanoGPT-style batches (see
``tokenizer``, ``pretrained_tokenizer`` and ``corpus``)."""

from . import corpus, tokenizer
from .corpus import *  # noqa: F403
from .pretrained_tokenizer import MarianTokenizer, Tokenizer
from .tokenizer import *  # noqa: F403

__all__ = ["Tokenizer", "MarianTokenizer", *tokenizer.__all__, *corpus.__all__]
