"""Sentence embeddings: a sentence-transformers model directory run on
attnkit's BERT. ``SentenceEncoder.from_pretrained(dir).encode(texts)``."""

from __future__ import annotations

import json
import numbers
import os

import numpy as np

from ..autograd import no_grad
from ..ops import checks
from ..tensor import from_numpy
from .bert import BERT

MODULES_FILE = "modules.json"
SENTENCE_BERT_CONFIG_FILE = "sentence_bert_config.json"
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
# The pooling config's older spelling: one flag per mode.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _module_kind(entry: dict) -> str:
    """ "Transformer", "Pooling", "Normalize", ... from a modules.json type
    such as "sentence_transformers.models.Pooling"."""
    kind = entry.get("type") if isinstance(entry, dict) else None
    return kind.rsplit(".", 1)[-1] if isinstance(kind, str) else ""


def _pooling_modes(config: dict, path: str) -> tuple:
    modes = config.get("pooling_mode")
    if modes is None:
        modes = tuple(mode for flag, mode in _LEGACY_POOLING_FLAGS.items() if config.get(flag)) or ("mean",)
    elif isinstance(modes, str):
        modes = (modes,)
    modes = tuple(modes)
    unsupported = [mode for mode in modes if mode not in POOLING_MODES]
    if unsupported:
        raise ValueError(
            f"SentenceEncoder: '{path}' asks for pooling {', '.join(map(repr, unsupported))}; "
            f"attnkit pools with {', '.join(POOLING_MODES)}"
        )
    return modes


class SentenceEncoder:
    """A sentence-transformers model: a BERT encoder, then pooling over the
    tokens (mean, CLS, max, mean / sqrt(length), or several of them
    concatenated), then, with a Normalize module, unit length.

    ``encode(texts, batch_size=32, normalize=None)`` returns float32 numpy
    [N, dim] (a single str gives [dim]), the embeddings of sentence-
    transformers for the same model: texts longer than ``max_seq_length``
    tokens are cut, and within one call the texts are sorted by length
    (longest first) before they are cut into batches, so that a batch pads
    to texts of about its own length; the rows come back in the order given.
    """

    def __init__(
        self,
        model: BERT,
        tokenizer,
        *,
        pooling=("mean",),
        normalize: bool = False,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
    ) -> None:
        if not isinstance(model, BERT):
            raise TypeError(f"SentenceEncoder: argument 'model' expected an attnkit BERT, got {type(model).__name__}")
        pooling = (pooling,) if isinstance(pooling, str) else tuple(pooling)
        if not pooling or any(mode not in POOLING_MODES for mode in pooling):
            raise ValueError(f"SentenceEncoder: argument 'pooling' expected modes among {POOLING_MODES}, got {pooling}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = bool(normalize)
        limit = model.config.block_size if max_seq_length is None else int(max_seq_length)
        self.max_seq_length = min(limit, model.config.block_size)
        self.do_lower_case = bool(do_lower_case)

    def to(self, *args, **kwargs) -> SentenceEncoder:
        """Converts the BERT's weights (``Module.to``: ``to(attnkit.bfloat16)``
        halves their memory; the embeddings still come back float32)."""
        self.model.to(*args, **kwargs)
        return self

    @property
    def embedding_dimension(self) -> int:
        return self.model.config.n_embd * len(self.pooling)

    @classmethod
    def from_pretrained(cls, path) -> SentenceEncoder:
        """Reads a sentence-transformers directory: modules.json (a
        Transformer module, then Pooling, then optionally Normalize),
        the Transformer's checkpoint and tokenizer, its
        sentence_bert_config.json (max_seq_length, else the tokenizer's
        model_max_length; do_lower_case), and the Pooling module's
        config.json. Local directories only."""
        from ..data.pretrained_tokenizer import Tokenizer
        from .hf import from_pretrained
        from .hf.checkpoint import read_json

        op = "SentenceEncoder.from_pretrained"
        directory = checks.local_directory(op, path)
        modules_path = os.path.join(directory, MODULES_FILE)
        if not os.path.isfile(modules_path):
            raise ValueError(f"{op}: '{directory}' has no {MODULES_FILE}; it is not a sentence-transformers model")
        with open(modules_path, encoding="utf-8") as f:
            try:
                entries = json.load(f)
            except ValueError as error:
                raise ValueError(f"{op}: '{modules_path}' is not valid JSON: {error}") from None
        if not isinstance(entries, list):
            raise ValueError(f"{op}: '{modules_path}' should hold a list of modules")
        kinds = [_module_kind(entry) for entry in entries]
        if kinds[:2] != ["Transformer", "Pooling"] or any(kind != "Normalize" for kind in kinds[2:]):
            raise ValueError(
                f"{op}: '{modules_path}' lists modules {kinds}; attnkit runs Transformer, Pooling, "
                f"then optionally Normalize"
            )
        transformer_directory = os.path.join(directory, entries[0].get("path") or "")
        model = from_pretrained(transformer_directory)
        if not isinstance(model, BERT):
            raise ValueError(
                f"{op}: the Transformer module is a {model.hf_architecture}; attnkit's sentence encoder runs BERT"
            )
        settings_path = os.path.join(transformer_directory, SENTENCE_BERT_CONFIG_FILE)
        settings = read_json(settings_path, "the sentence-transformers config") if os.path.isfile(settings_path) else {}
        pooling_path = os.path.join(directory, entries[1].get("path") or "", "config.json")
        pooling = _pooling_modes(read_json(pooling_path, "the pooling config"), pooling_path)
        tokenizer = model.tokenizer or Tokenizer.from_pretrained(transformer_directory)
        return cls(
            model,
            tokenizer,
            pooling=pooling,
            normalize=len(kinds) > 2,
            # sentence-transformers 5 and later keep it as the tokenizer's model_max_length.
            max_seq_length=settings.get("max_seq_length") or tokenizer.model_max_length,
            do_lower_case=settings.get("do_lower_case", False),
        )

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[B, dim] from the last layer [B, T, C] and the attention mask."""
        pooled = []
        weights = mask[:, :, None].astype(np.float32)
        for mode in self.pooling:
            if mode == "cls":
                first = mask.argmax(axis=1)  # the first real token (right padding: position 0)
                pooled.append(tokens[np.arange(len(tokens)), first])
            elif mode == "max":
                pooled.append(np.where(weights > 0, tokens, -np.inf).max(axis=1).astype(np.float32))
            else:
                count = np.maximum(weights.sum(axis=1), 1e-9)
                total = (tokens * weights).sum(axis=1)
                pooled.append(total / (count if mode == "mean" else np.sqrt(count)))
        return np.concatenate(pooled, axis=1) if len(pooled) > 1 else pooled[0]

    def encode(self, sentences, batch_size: int = 32, normalize: bool | None = None) -> np.ndarray:
        """Embeddings, float32 numpy [N, embedding_dimension] (see the class
        docstring). ``normalize``: None follows the model (its Normalize
        module); True or False forces unit length or not."""
        op = "SentenceEncoder.encode"
        single = isinstance(sentences, str)
        texts = [sentences] if single else sentences
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"{op}: argument 'sentences' expected a list of str, got {type(sentences).__name__}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{op}: sentence {index} expected a str, got {type(text).__name__}")
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"{op}: argument 'batch_size' expected a positive int, got {batch_size!r}")
        if normalize is not None and not isinstance(normalize, bool):
            raise TypeError(f"{op}: argument 'normalize' expected None or a bool, got {type(normalize).__name__}")
        if self.do_lower_case:
            texts = [text.lower() for text in texts]
        # Longest first, by characters, as sentence-transformers orders them.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        output = np.empty((len(texts), self.embedding_dimension), np.float32)
        with no_grad():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                batch = self.tokenizer.encode_batch(
                    [texts[i] for i in rows], truncation=True, max_length=self.max_seq_length
                )
                ids, mask = batch["input_ids"], batch["attention_mask"]
                # pooled in float32 (a model in bfloat16 gives bfloat16 tokens, widened exactly)
                tokens = self.model.encode(from_numpy(ids), attention_mask=from_numpy(mask)).float().numpy()
                output[rows] = self._pool(tokens, mask)
        if self.normalize if normalize is None else normalize:
            output /= np.maximum(np.linalg.norm(output, axis=1, keepdims=True), 1e-12)
        return output[0] if single else output

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(dim={self.embedding_dimension}, pooling={'+'.join(self.pooling)}, "
            f"normalize={self.normalize}, max_seq_length={self.max_seq_length})"
        )


__all__ = ["SentenceEncoder", "POOLING_MODES"]
