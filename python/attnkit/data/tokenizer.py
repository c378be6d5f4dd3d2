"""Tokenizers: text <-> token ids.

Three kinds, all with the same small interface (``encode``, ``decode``,
``vocab_size``, ``to_dict`` and ``tokenizer_from_dict`` to store one in a
checkpoint as JSON):

- ``CharTokenizer``: one id per character of the training text, the
  characters sorted by code point (nanoGPT's shakespeare_char): 65 ids for
  tiny Shakespeare.
- ``ByteTokenizer``: the 256 byte values of the UTF-8 encoding, then the
  specials <bos>, <eos> and <pad>; encodes any text.
- ``BPETokenizer``: byte-level byte-pair encoding (Sennrich et al., 2016, as
  GPT-2 applies it to bytes) trained on the user's text, through the
  ``tokenizers`` package (``pip install 'attnkit[bpe]'``).
"""

from __future__ import annotations

import codecs
import json
import numbers

import numpy as np

TOKENIZER_KINDS = ("char", "byte", "bpe")
SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")


def _token_ids(op: str, ids) -> np.ndarray:
    """``ids`` (a list, numpy array or attnkit Tensor of ints) as a flat int64 array."""
    if hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):
        ids = ids.numpy()
    array = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: argument 'ids' expected integer token ids, got {array.dtype}")
    return array.reshape(-1).astype(np.int64, copy=False)


def _check_range(op: str, ids: np.ndarray, vocab_size: int) -> None:
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(
            f"{op}: token id {int(ids[position])} at position {position} is outside the vocabulary [0, {vocab_size})"
        )


class CharTokenizer:
    """One id per distinct character of a text, in code-point order."""

    kind = "char"

    def __init__(self, chars) -> None:
        chars = list(chars)
        if not chars:
            raise ValueError("CharTokenizer: argument 'chars' expected at least one character, got none")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: argument 'chars' expected single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: argument 'chars' has repeated characters")
        self.chars = sorted(chars)
        # Sorted code points: encoding is one searchsorted over the text's
        # UTF-32 code points, fast enough for a corpus of megabytes.
        self._code_points = np.array([ord(c) for c in self.chars], np.uint32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.from_text: argument 'text' expected a str, got {type(text).__name__}")
        if not text:
            raise ValueError("CharTokenizer.from_text: argument 'text' is empty; there is no vocabulary to build")
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids, one per character. A character outside the vocabulary
        is a ValueError naming it and its position."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: argument 'text' expected a str, got {type(text).__name__}")
        code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        ids = np.searchsorted(self._code_points, code_points)
        known = ids < len(self._code_points)
        known[known] = self._code_points[ids[known]] == code_points[known]
        if not known.all():
            position = int(np.argmin(known))
            raise ValueError(
                f"CharTokenizer.encode: the character {text[position]!r} at position {position} "
                f"is not in the vocabulary of {self.vocab_size} characters this tokenizer was "
                f"built from"
            )
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        ids = _token_ids("CharTokenizer.decode", ids)
        _check_range("CharTokenizer.decode", ids, self.vocab_size)
        return "".join(self.chars[i] for i in ids.tolist())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars)}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer:
    """The UTF-8 bytes of a text as ids 0-255; ids 256, 257 and 258 are
    <bos>, <eos> and <pad>. Decoding skips the specials and replaces bytes
    that are not valid UTF-8 with U+FFFD."""

    kind = "byte"
    bos_id, eos_id, pad_id = 256, 257, 258
    vocab_size = 256 + len(SPECIAL_TOKENS)

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode: argument 'text' expected a str, got {type(text).__name__}")
        ids = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)
        if add_bos or add_eos:
            ids = np.concatenate([[self.bos_id] if add_bos else [], ids, [self.eos_id] if add_eos else []])
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        ids = _token_ids("ByteTokenizer.decode", ids)
        _check_range("ByteTokenizer.decode", ids, self.vocab_size)
        return ids[ids < 256].astype(np.uint8).tobytes().decode("utf-8", "replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind}

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=259)"


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            "BPETokenizer needs the 'tokenizers' package: pip install 'attnkit[bpe]' (or pip install tokenizers)",
            name="tokenizers",
        ) from None
    return tokenizers


class BPETokenizer:
    """Byte-level BPE through the ``tokenizers`` package: the text's bytes,
    merged by the most frequent pairs of the training text up to
    ``vocab_size`` ids (the specials <bos>, <eos>, <pad> first). Any text
    encodes; decoding gives the text back."""

    kind = "bpe"

    def __init__(self, tokenizer) -> None:
        """Wraps a ``tokenizers.Tokenizer``; use ``train`` to make one."""
        self._tokenizer = tokenizer
        self.bos_id, self.eos_id, self.pad_id = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    @classmethod
    def train(cls, text: str, vocab_size: int = 512) -> BPETokenizer:
        """Learns the merges of ``text`` (with ``vocab_size`` >= 259: the 256
        bytes and three specials, plus the merges)."""
        tokenizers = _import_tokenizers()
        if not isinstance(text, str) or not text:
            raise ValueError("BPETokenizer.train: argument 'text' expected a non-empty str")
        if not isinstance(vocab_size, numbers.Integral) or vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(
                f"BPETokenizer.train: argument 'vocab_size' expected an int >= "
                f"{256 + len(SPECIAL_TOKENS)} (the bytes and the specials), got {vocab_size!r}"
            )
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tokenizer = tokenizers.Tokenizer(models.BPE())
        # add_prefix_space=False keeps encode(text) -> decode a round trip.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=int(vocab_size),
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        # Lines in chunks: the trainer counts words per item, and one item of
        # megabytes would be held whole in its buffers.
        lines = text.splitlines(keepends=True)
        chunks = ("".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000))
        tokenizer.train_from_iterator(chunks, trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.encode: argument 'text' expected a str, got {type(text).__name__}")
        return np.array(self._tokenizer.encode(text).ids, np.int64)

    def decode(self, ids) -> str:
        ids = _token_ids("BPETokenizer.decode", ids)
        _check_range("BPETokenizer.decode", ids, self.vocab_size)
        return self._tokenizer.decode(ids.tolist(), skip_special_tokens=True)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self._tokenizer.to_str())}

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def build_tokenizer(kind: str, text: str, *, bpe_vocab_size: int = 512):
    """A tokenizer of ``kind`` ("char", "byte" or "bpe") for ``text``."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(text, bpe_vocab_size)
    raise ValueError(f"build_tokenizer: argument 'kind' expected one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")


def tokenizer_from_dict(state: dict):
    """The tokenizer a ``to_dict()`` describes."""
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "char" and isinstance(state.get("chars"), str):
        return CharTokenizer(state["chars"])
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe" and isinstance(state.get("tokenizer"), dict):
        tokenizers = _import_tokenizers()
        return BPETokenizer(tokenizers.Tokenizer.from_str(json.dumps(state["tokenizer"])))
    raise ValueError(
        f"tokenizer_from_dict: expected the to_dict() of a char, byte or bpe tokenizer, got "
        f"{state if not isinstance(state, dict) else sorted(state)!r}"
    )


class StreamDecoder:
    """Turns ids arriving one step at a time into text as soon as it is
    whole: ``push(ids)`` returns the text that became final. A character
    whose UTF-8 bytes span several byte or BPE tokens is held back until its
    last byte has come."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace") if tokenizer.kind == "byte" else None
        self._ids: list = []
        self._emitted = 0

    def push(self, ids) -> str:
        ids = _token_ids("StreamDecoder.push", ids)
        if self._bytes is not None:
            _check_range("StreamDecoder.push", ids, self.tokenizer.vocab_size)
            return self._bytes.decode(ids[ids < 256].astype(np.uint8).tobytes())
        if self.tokenizer.kind == "char":
            return self.tokenizer.decode(ids)
        # BPE and pretrained tokenizers: decode everything so far and emit what is new, holding back a
        # trailing replacement character (an incomplete multi-byte character).
        self._ids.extend(ids.tolist())
        text = self.tokenizer.decode(self._ids)
        final = len(text.rstrip("\ufffd"))
        new = text[self._emitted : final]
        self._emitted = max(self._emitted, final)
        return new

    def flush(self) -> str:
        """What is still held back (an unfinished character, as U+FFFD)."""
        if self._bytes is not None:
            return self._bytes.decode(b"", final=True)
        if self.tokenizer.kind != "char":  # BPE and pretrained tokenizers
            text = self.tokenizer.decode(self._ids)
            rest, self._emitted = text[self._emitted :], len(text)
            return rest
        return ""


__all__ = [
    "CharTokenizer",
    "ByteTokenizer",
    "BPETokenizer",
    "StreamDecoder",
    "build_tokenizer",
    "tokenizer_from_dict",
    "TOKENIZER_KINDS",
    "SPECIAL_TOKENS",
]
