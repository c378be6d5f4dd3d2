"""The tokenizers of pretrained models: ``Tokenizer.from_pretrained(dir)``.

- ``Tokenizer``: a Hugging Face ``tokenizer.json`` (BPE, WordPiece, Unigram:
  whatever the file describes), run by the ``tokenizers`` package, with the
  special tokens and settings of ``tokenizer_config.json``.
- ``MarianTokenizer``: OPUS-MT's SentencePiece models (``source.spm``,
  ``target.spm``) and shared ``vocab.json``, run by the ``sentencepiece``
  package.

Both packages come with ``pip install 'attnkit[hf]'``. The interface is that
of attnkit's other tokenizers (``encode``, ``decode``, ``vocab_size``,
``kind``; they are stored as files, ``save_pretrained``, not as
``to_dict``), plus what pretrained models need: ``encode_batch`` (padding,
truncation, attention masks, token types), the special tokens and their ids,
and ``save_pretrained``.
"""

from __future__ import annotations

import json
import numbers
import os
import shutil

import numpy as np

from ..ops import checks
from .tokenizer import _check_range, _token_ids

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
# The special tokens transformers knows by role, in tokenizer_config.json.
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers' clean_up_tokenization: the spaces its decoders leave before
# punctuation and English contractions.
_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _import(package: str, what: str):
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(
            f"{what} needs the '{package}' package: pip install 'attnkit[hf]' (or pip install {package})",
            name=package,
        ) from None


def _read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"Tokenizer.from_pretrained: {what} '{path}' is not valid JSON: {error}") from None


def _token_text(value):
    """A special token as tokenizer_config.json writes it: a str, or an
    AddedToken dict {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _byte_characters() -> list:
    """GPT-2's byte-level alphabet: for each byte 0..255, the printable
    character that stands for it (the printable Latin-1 bytes stand for
    themselves; the others, in order, for chr(256), chr(257), ...)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    characters, extra = [], 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + extra))
            extra += 1
    return characters


def _check_text(op: str, text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{op}: argument 'text' expected a str, got {type(text).__name__}")
    return text


class Tokenizer:
    """A pretrained model's tokenizer (``from_pretrained``; construct it
    directly only to wrap a ``tokenizers.Tokenizer``).

    - ``encode(text)``: int64 ids, with the model's special tokens ([CLS] ...
      [SEP], <s>, ...) as transformers adds them; ``add_special_tokens=False``
      leaves them out.
    - ``decode(ids)``: the text, special tokens skipped by default.
    - ``encode_batch(texts, padding=True, max_length=None, truncation=False)``:
      a dict of int64 numpy arrays [B, T]: ``input_ids`` and
      ``attention_mask`` (1 = token, 0 = padding; each text is one segment,
      so BERT's token types are all 0, its default). Padding goes on
      ``padding_side`` (the config's; "right" by default) with
      ``pad_token_id``.
    - The special tokens by role (``bos_token``, ``eos_token``, ``pad_token``,
      ...; None where the model has none) and their ids (``bos_token_id``,
      ...; ``bos_id``, ``eos_id``, ``pad_id`` as attnkit's other tokenizers
      call them); ``all_special_ids``.
    - ``config``: tokenizer_config.json as read; ``chat_template``: its chat
      template (or that of chat_template.jinja), None where there is none.
    """

    kind = "hf"

    def __init__(self, tokenizer, config: dict | None = None, chat_template: str | None = None) -> None:
        self._tokenizer = tokenizer
        self.config = dict(config or {})
        self.chat_template = chat_template
        self._setup()

    def _setup(self) -> None:
        """Reads the special tokens and settings from ``self.config``."""
        self.special_tokens = {role: _token_text(self.config.get(role)) for role in SPECIAL_ROLES}
        side = self.config.get("padding_side", "right")
        if side not in ("left", "right"):
            raise ValueError(f"Tokenizer: tokenizer_config.json's 'padding_side' is {side!r}; expected left or right")
        self.padding_side = side
        self.model_max_length = self.config.get("model_max_length")
        self.clean_up_tokenization_spaces = bool(self.config.get("clean_up_tokenization_spaces", False))

    # ------------------------------------------------------------ loading --
    @classmethod
    def from_pretrained(cls, path) -> Tokenizer:
        """The tokenizer in a model directory: tokenizer.json (with
        tokenizer_config.json and special_tokens_map.json when present), or
        Marian's source.spm/target.spm/vocab.json (a ``MarianTokenizer``).
        Local directories only: nothing is downloaded."""
        op = "Tokenizer.from_pretrained"
        directory = checks.local_directory(op, path)
        config = cls._read_config(directory)
        if cls is Tokenizer and not os.path.isfile(os.path.join(directory, TOKENIZER_FILE)):
            if all(os.path.isfile(os.path.join(directory, name)) for name in MARIAN_FILES):
                return MarianTokenizer._load(directory, config)
            raise ValueError(
                f"{op}: '{directory}' has no {TOKENIZER_FILE} (nor Marian's {', '.join(MARIAN_FILES)}); "
                f"a slow-only tokenizer (vocab.txt, merges.txt) can be converted with transformers: "
                f"AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"
            )
        return cls._load(directory, config)

    @classmethod
    def from_attnkit(cls, tokenizer) -> Tokenizer:
        """The tokenizer.json form of one of attnkit's own tokenizers (a
        ``CharTokenizer``, ``ByteTokenizer`` or ``BPETokenizer``): the same
        ids for the same text, and the same text back, in a file that
        transformers reads. ``save_pretrained`` of an attnkit-trained model
        writes its tokenizer so."""
        tokenizers = _import("tokenizers", "Tokenizer.from_attnkit")
        from tokenizers import Regex, decoders, models, pre_tokenizers

        kind = getattr(tokenizer, "kind", None)
        if kind == "char":
            vocab = {char: index for index, char in enumerate(tokenizer.chars)}
            # A character outside the vocabulary is an error, as in CharTokenizer.
            result = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unknown character>"))
            result.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
            result.decoder = decoders.Fuse()
            return cls(result, {"tokenizer_class": "PreTrainedTokenizerFast"})
        specials = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", **specials}
        if kind == "bpe":
            return cls(tokenizers.Tokenizer.from_str(tokenizer._tokenizer.to_str()), config)
        if kind == "byte":
            # Byte-level BPE without merges: byte b is id b, written as
            # GPT-2's printable stand-in for that byte.
            vocab = {char: byte for byte, char in enumerate(_byte_characters())}
            result = tokenizers.Tokenizer(models.BPE(vocab, []))
            result.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
            result.decoder = decoders.ByteLevel()
            result.add_special_tokens(list(specials.values()))
            return cls(result, config)
        raise TypeError(
            f"Tokenizer.from_attnkit: argument 'tokenizer' expected a CharTokenizer, ByteTokenizer or "
            f"BPETokenizer, got {type(tokenizer).__name__}"
        )

    @staticmethod
    def _read_config(directory: str) -> dict:
        """tokenizer_config.json, with special_tokens_map.json's roles where
        the config lacks them (older checkpoints keep them apart)."""
        config_path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
        config = _read_json(config_path, "the tokenizer config") if os.path.isfile(config_path) else {}
        map_path = os.path.join(directory, SPECIAL_TOKENS_MAP_FILE)
        if os.path.isfile(map_path):
            for role, token in _read_json(map_path, "the special tokens map").items():
                if role in SPECIAL_ROLES and config.get(role) is None:
                    config[role] = token
        template_path = os.path.join(directory, CHAT_TEMPLATE_FILE)
        if os.path.isfile(template_path):
            with open(template_path, encoding="utf-8") as f:
                config["chat_template"] = f.read()
        return config

    @classmethod
    def _load(cls, directory: str, config: dict) -> Tokenizer:
        tokenizers = _import("tokenizers", "Tokenizer.from_pretrained")
        path = os.path.join(directory, TOKENIZER_FILE)
        try:
            tokenizer = tokenizers.Tokenizer.from_file(path)
        except Exception as error:  # tokenizers raises its own Exception type for a bad file
            raise ValueError(f"Tokenizer.from_pretrained: '{path}' cannot be read: {error}") from None
        # Padding and truncation are ours to apply per call.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        template = config.get("chat_template")
        return cls(tokenizer, config, template if isinstance(template, str) else None)

    # ---------------------------------------------------------- vocabulary --
    @property
    def vocab_size(self) -> int:
        """The number of ids, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str):
        """The id of ``token``, or None when the vocabulary lacks it."""
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int):
        return self._tokenizer.id_to_token(int(token_id))

    def _role_id(self, role: str):
        token = self.special_tokens.get(role)
        return None if token is None else self.token_to_id(token)

    bos_token = property(lambda self: self.special_tokens["bos_token"])
    eos_token = property(lambda self: self.special_tokens["eos_token"])
    unk_token = property(lambda self: self.special_tokens["unk_token"])
    sep_token = property(lambda self: self.special_tokens["sep_token"])
    pad_token = property(lambda self: self.special_tokens["pad_token"])
    cls_token = property(lambda self: self.special_tokens["cls_token"])
    mask_token = property(lambda self: self.special_tokens["mask_token"])
    bos_token_id = bos_id = property(lambda self: self._role_id("bos_token"))
    eos_token_id = eos_id = property(lambda self: self._role_id("eos_token"))
    unk_token_id = property(lambda self: self._role_id("unk_token"))
    sep_token_id = property(lambda self: self._role_id("sep_token"))
    pad_token_id = pad_id = property(lambda self: self._role_id("pad_token"))
    cls_token_id = property(lambda self: self._role_id("cls_token"))
    mask_token_id = property(lambda self: self._role_id("mask_token"))

    @property
    def all_special_ids(self) -> list:
        """The ids of the special tokens by role and of the added special
        tokens, sorted."""
        ids = {self._role_id(role) for role in SPECIAL_ROLES} - {None}
        ids |= {token_id for token_id, token in self._added_tokens().items() if token.special}
        return sorted(ids)

    def _added_tokens(self) -> dict:
        return self._tokenizer.get_added_tokens_decoder()

    # ------------------------------------------------------------ encoding --
    def _encode_rows(self, texts: list, add_special_tokens: bool, max_length) -> list:
        """The ids of each text, at most max_length of them."""
        if max_length is not None:
            self._tokenizer.enable_truncation(max_length)
        try:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._tokenizer.no_truncation()
        return [encoding.ids for encoding in encodings]

    def encode(self, text: str, *, add_special_tokens: bool = True) -> np.ndarray:
        """The int64 ids of ``text``."""
        _check_text(f"{type(self).__name__}.encode", text)
        return np.array(self._encode_rows([text], add_special_tokens, None)[0], np.int64)

    def encode_batch(
        self, texts, *, padding=True, max_length: int | None = None, truncation: bool = False, add_special_tokens=True
    ) -> dict:
        """Encodes a list of texts into one padded batch (see the class
        docstring). ``padding``: True (or "longest") pads to the longest
        text, "max_length" to ``max_length``, False requires equal lengths.
        ``truncation=True`` cuts each text to ``max_length`` ids (its special
        tokens kept); without it a longer text is an error."""
        op = f"{type(self).__name__}.encode_batch"
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"{op}: argument 'texts' expected a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{op}: text {index} expected a str, got {type(text).__name__}")
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(
                f"{op}: argument 'padding' expected True, False, 'longest' or 'max_length', got {padding!r}"
            )
        if max_length is not None and (
            not isinstance(max_length, numbers.Integral) or isinstance(max_length, bool) or max_length < 1
        ):
            raise ValueError(f"{op}: argument 'max_length' expected a positive int or None, got {max_length!r}")
        if (truncation or padding == "max_length") and max_length is None:
            raise ValueError(f"{op}: truncation and padding='max_length' need 'max_length'")
        rows = self._encode_rows(list(texts), add_special_tokens, max_length if truncation else None)
        lengths = [len(ids) for ids in rows]
        if max_length is not None and not truncation and lengths and max(lengths) > max_length:
            index = int(np.argmax(lengths))
            raise ValueError(
                f"{op}: text {index} has {lengths[index]} tokens, more than max_length={max_length} "
                f"(pass truncation=True to cut it)"
            )
        width = max_length if padding == "max_length" else max(lengths, default=0)
        if padding is False and len(set(lengths)) > 1:
            raise ValueError(
                f"{op}: the texts have different lengths ({min(lengths)} to {max(lengths)}) and padding=False"
            )
        pad_id = self.pad_token_id
        if pad_id is None and min(lengths, default=0) < width:
            raise ValueError(f"{op}: the texts need padding, and this tokenizer has no pad_token")
        input_ids = np.full((len(rows), width), 0 if pad_id is None else pad_id, np.int64)
        attention_mask = np.zeros((len(rows), width), np.int64)
        for row, ids in enumerate(rows):
            span = slice(width - len(ids), width) if self.padding_side == "left" else slice(0, len(ids))
            input_ids[row, span] = ids
            attention_mask[row, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # ------------------------------------------------------------ decoding --
    def _decode_ids(self, ids: list, skip_special_tokens: bool) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        """The text of ``ids`` (a list, numpy array or Tensor of ints)."""
        op = f"{type(self).__name__}.decode"
        ids = _token_ids(op, ids)
        _check_range(op, ids, self.vocab_size)
        text = self._decode_ids(ids.tolist(), skip_special_tokens)
        if self.clean_up_tokenization_spaces:
            for before, after in _CLEANUPS:
                text = text.replace(before, after)
        return text

    def batch_decode(self, rows, *, skip_special_tokens: bool = True) -> list:
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in rows]

    # ---------------------------------------------------------------- chat --
    def apply_chat_template(
        self, messages, *, add_generation_prompt: bool = False, tokenize: bool = True, tools=None, **variables
    ):
        """``messages`` (dicts with "role" and "content") in the model's chat
        format: the Jinja2 ``chat_template`` rendered as transformers renders
        it (see ``attnkit.data.chat``), with this tokenizer's special tokens
        and any ``variables`` in reach of the template. With
        ``add_generation_prompt`` the text ends where the assistant's reply
        begins. Returns the ids (``tokenize=True``; the special tokens are
        those the template writes, none added) or the text. A tokenizer
        config with several named templates uses "tool_use" when ``tools``
        are given and it has one, else "default"."""
        from .chat import render_chat_template

        op = f"{type(self).__name__}.apply_chat_template"
        template = self.chat_template
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
            named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
            template = named.get("tool_use") if tools is not None and "tool_use" in named else named.get("default")
        if template is None:
            raise ValueError(
                f"{op}: this tokenizer has no chat template (tokenizer_config.json's 'chat_template' or "
                f"chat_template.jinja); it is not a chat model's tokenizer"
            )
        special = {role: token for role, token in self.special_tokens.items() if token is not None}
        extra = self.config.get("additional_special_tokens")
        if extra is not None:
            special["additional_special_tokens"] = [_token_text(token) for token in extra]
        text = render_chat_template(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            special_tokens=special,
            tools=tools,
            **variables,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # -------------------------------------------------------------- saving --
    def save_pretrained(self, path) -> None:
        """Writes tokenizer.json and tokenizer_config.json into ``path`` (a
        directory, created if absent), as transformers reads them."""
        directory = os.fspath(path)
        os.makedirs(directory, exist_ok=True)
        self._tokenizer.save(os.path.join(directory, TOKENIZER_FILE))
        self._write_config(directory)

    def _write_config(self, directory: str) -> None:
        config = dict(self.config)
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        with open(os.path.join(directory, TOKENIZER_CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class MarianTokenizer(Tokenizer):
    """OPUS-MT's tokenizer: the source text through ``source.spm`` into
    pieces, each piece's id from ``vocab.json`` (<unk> for a piece the
    vocabulary lacks), then </s>; a leading language code such as ``>>fr<<``
    (multilingual models) stays one token. ``decode`` turns ids back into
    pieces and joins them with the SentencePiece model, as transformers
    does (with the source model where the vocabulary is shared; Moses
    punctuation normalization, which transformers applies only when
    sacremoses is installed, is not applied)."""

    kind = "marian"

    def __init__(self, directory: str, config: dict) -> None:
        sentencepiece = _import("sentencepiece", "MarianTokenizer")
        self.directory = directory
        if config.get("separate_vocabs"):
            raise ValueError(
                "MarianTokenizer: tokenizer_config.json sets separate_vocabs (separate source and target "
                "vocabularies), which attnkit does not support"
            )
        self._processors = {}
        for name in ("source.spm", "target.spm"):
            processor = sentencepiece.SentencePieceProcessor()
            path = os.path.join(directory, name)
            try:
                processor.Load(path)
            except (OSError, RuntimeError) as error:
                raise ValueError(f"MarianTokenizer: '{path}' is not a SentencePiece model: {error}") from None
            self._processors[name] = processor
        vocab = _read_json(os.path.join(directory, "vocab.json"), "the vocabulary")
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise ValueError("MarianTokenizer: vocab.json should map pieces to int ids")
        self.vocab = vocab
        self._pieces = {token_id: piece for piece, token_id in vocab.items()}
        self._vocab_size = max(vocab.values()) + 1
        self.config = dict(config)
        self.config.setdefault("unk_token", "<unk>")
        self.config.setdefault("eos_token", "</s>")
        self.config.setdefault("pad_token", "<pad>")
        self.config.setdefault("model_max_length", 512)
        self.chat_template = None
        self._setup()
        if self.unk_token not in vocab:
            raise ValueError(f"MarianTokenizer: vocab.json lacks the unknown token {self.unk_token!r}")

    @classmethod
    def _load(cls, directory: str, config: dict) -> MarianTokenizer:
        return cls(directory, config)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def token_to_id(self, token: str):
        return self.vocab.get(token)

    def id_to_token(self, token_id: int):
        return self._pieces.get(int(token_id))

    def _added_tokens(self) -> dict:
        return {}

    def _encode_rows(self, texts: list, add_special_tokens: bool, max_length) -> list:
        source = self._processors["source.spm"]
        unk, eos = self.unk_token_id, self.eos_token_id
        rows = []
        for text in texts:
            code = []
            if text.startswith(">>") and text.find("<<") != -1:
                end = text.find("<<") + 2
                code, text = [text[:end]], text[end:]
            pieces = code + source.encode(text, out_type=str)
            ids = [self.vocab.get(piece, unk) for piece in pieces]
            if max_length is not None:
                ids = ids[: max_length - 1 if add_special_tokens else max_length]
            if add_special_tokens:
                ids.append(eos)
            rows.append(ids)
        return rows

    def _decode_ids(self, ids: list, skip_special_tokens: bool) -> str:
        special = {self.special_tokens[role] for role in SPECIAL_ROLES} - {None}
        processor = self._processors["source.spm"]
        pieces = [self._pieces.get(token_id) or processor.IdToPiece(token_id) or self.unk_token for token_id in ids]
        if skip_special_tokens:
            pieces = [piece for piece in pieces if piece not in special]
        # Runs of ordinary pieces go through SentencePiece; a special token
        # is written as it is, followed by a space.
        text, run = "", []
        for piece in pieces:
            if piece in special:
                text += processor.decode_pieces(run) + piece + " "
                run = []
            else:
                run.append(piece)
        text += processor.decode_pieces(run)
        return text.replace("\u2581", " ").strip()

    def save_pretrained(self, path) -> None:
        """Copies source.spm, target.spm and vocab.json into ``path`` and
        writes tokenizer_config.json."""
        directory = os.fspath(path)
        os.makedirs(directory, exist_ok=True)
        for name in MARIAN_FILES:
            source = os.path.join(self.directory, name)
            target = os.path.join(directory, name)
            if os.path.abspath(source) != os.path.abspath(target):
                shutil.copyfile(source, target)
        config = dict(self.config)
        config.setdefault("tokenizer_class", "MarianTokenizer")
        self.config = config
        self._write_config(directory)


__all__ = ["Tokenizer", "MarianTokenizer"]
