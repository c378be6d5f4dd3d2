"""Data: tokenizers (attnkit's own, and pretrained models' ``Tokenizer``),
the bundled tiny Shakespeare corpus and nanoGPT-style batches (see
``tokenizer``, ``pretrained_tokenizer`` and ``corpus``)."""

from .corpus import (
    BUNDLED_CORPUS,
    batch_arrays,
    bundled_corpus_path,
    get_batch,
    load_text,
    random_offsets,
    split_tokens,
)
from .pretrained_tokenizer import MarianTokenizer, Tokenizer
from .tokenizer import (
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    StreamDecoder,
    build_tokenizer,
    tokenizer_from_dict,
)

__all__ = [
    "Tokenizer",
    "MarianTokenizer",
    "CharTokenizer",
    "ByteTokenizer",
    "BPETokenizer",
    "StreamDecoder",
    "build_tokenizer",
    "tokenizer_from_dict",
    "TOKENIZER_KINDS",
    "SPECIAL_TOKENS",
    "BUNDLED_CORPUS",
    "bundled_corpus_path",
    "load_text",
    "split_tokens",
    "random_offsets",
    "batch_arrays",
    "get_batch",
]
