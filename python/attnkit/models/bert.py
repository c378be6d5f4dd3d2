"""BERT (Devlin et al., 2019): a post-LN Transformer encoder over word,
position and token-type (segment) embeddings, with the pooler and the
masked-language-model head, plus ``mask_tokens``, the MLM masking of section
3.1 (15% of the tokens; 80% of those become [MASK], 10% a random token, 10%
stay).

Config names follow nanoGPT where they exist (``block_size`` is BERT's
max_position_embeddings); the sizes and choices not in the paper (LayerNorm eps
1e-12, N(0, 0.02) initialization, the tied MLM decoder with its own bias) are
those of Google's released BERT."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _dtypes, nn
from .._tensor_data import values_view
from ..nn import functional as F
from ..nn import init
from ..random import Generator, random_words
from ..tensor import Tensor, arange, from_numpy, zeros
from .hf import loading as hf_loading


@dataclass
class BertConfig:
    vocab_size: int = 30522
    block_size: int = 512  # the longest sequence: BERT's max_position_embeddings
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    d_ff: int = 3072  # the feed-forward width (BERT's intermediate_size)
    type_vocab_size: int = 2  # segments A and B
    dropout: float = 0.1  # on embeddings, sublayer outputs and attention weights
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    pooler: bool = True  # the pooler (dense + tanh on [CLS]); Hugging Face's BertForMaskedLM has none
    mlm_head: bool = True  # the masked-LM head; False: the encoder alone, as Hugging Face's BertModel
    num_labels: int = 0  # > 0: a classifier on the pooled output (BertForSequenceClassification)

    @classmethod
    def base(cls) -> BertConfig:
        """BERT-base: 110,104,890 parameters with the MLM head (tied decoder),
        109,482,240 without it (``BERT.num_parameters(include_mlm_head=False)``,
        the figure of Hugging Face's BertModel for bert-base-uncased)."""
        return cls(
            vocab_size=30522,
            block_size=512,
            n_layer=12,
            n_head=12,
            n_embd=768,
            d_ff=3072,
            type_vocab_size=2,
            dropout=0.1,
            layer_norm_eps=1e-12,
            pad_token_id=0,
        )


class BertOutput(NamedTuple):
    sequence_output: Tensor  # float32 [B, T, n_embd]: the encoder's last layer
    pooled_output: Tensor | None  # float32 [B, n_embd]: tanh(dense(first token)); None without a pooler


def _check_ids(op: str, argument: str, ids, shape=None) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(f"{op}: argument '{argument}' expected an attnkit.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (_dtypes.int32, _dtypes.int64) or ids.ndim != 2:
        raise ValueError(
            f"{op}: argument '{argument}' expected int32 or int64 ids of shape [batch, seq], "
            f"got {ids.dtype} of shape {list(ids.shape)}"
        )
    if shape is not None and tuple(ids.shape) != tuple(shape):
        raise ValueError(
            f"{op}: argument '{argument}' expected shape {list(shape)} (that of input_ids), got {list(ids.shape)}"
        )


def _lookup(table: nn.Embedding, ids: Tensor, argument: str, size_name: str) -> Tensor:
    """table(ids); an id outside the table is the embedding kernel's
    ValueError, re-raised naming BERT's argument and config field."""
    try:
        return table(ids)
    except ValueError as error:
        raise ValueError(
            f"BERT: argument '{argument}' expected ids in [0, {size_name}={table.num_embeddings}): {error}"
        ) from error


class BERT(nn.Module):
    """BERT's encoder with its pooler and MLM head.

    ``model(input_ids, token_type_ids=None, attention_mask=None)`` returns a
    ``BertOutput(sequence_output [B, T, C], pooled_output [B, C])``;
    ``model.mlm_logits(...)`` (same arguments) returns the MLM logits
    [B, T, vocab_size], for ``F.cross_entropy(logits.reshape(-1, V),
    labels.reshape(-1))`` with the -100 labels of ``mask_tokens`` ignored;
    ``model.classify(...)`` the classifier's logits [B, num_labels].

    - ``input_ids``: int32/int64 [B, T], T <= block_size, ids < vocab_size.
    - ``token_type_ids``: the segment of each token (0 for sentence A, 1 for
      B), same shape, ids < type_vocab_size; None means all 0.
    - ``attention_mask``: Hugging Face's convention, [B, T], 1 (or True) for
      a real token and 0 (False) for padding; any nonzero value counts as a
      token. Padding is masked as a key, so the real tokens' outputs do not
      depend on it; the padded positions' own outputs are computed but
      meaningless. (The attention modules take the opposite,
      ``key_padding_mask`` with True = padding, as PyTorch; this converts.)

    Layout: ``word_embeddings``, ``position_embeddings``,
    ``token_type_embeddings``, summed, then ``embedding_norm`` and dropout;
    ``encoder``, an ``nn.TransformerEncoder`` of post-LN layers (erf GELU,
    fused QKV projection); ``pooler`` (Linear, then tanh, on the first token,
    [CLS]); the MLM head: ``mlm_dense`` (Linear with erf GELU fused),
    ``mlm_norm``, then a decoder whose weight is ``word_embeddings.weight``
    (tied) and whose bias is ``mlm_bias``; with ``num_labels`` > 0,
    ``classifier`` (Linear on the pooled output, after dropout). The config's
    ``pooler`` and ``mlm_head`` leave those modules out: a model built
    without a head has none, rather than a random one.

    Initialization as Google's BERT: Linear weights and embeddings N(0, 0.02)
    (the padding id's embedding row then zeroed, as Hugging Face does), biases
    0, LayerNorms 1 and 0.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BERT: argument 'config' expected a BertConfig, got {type(config).__name__}")
        if not isinstance(config.num_labels, int) or isinstance(config.num_labels, bool) or config.num_labels < 0:
            raise ValueError(f"BERT: config.num_labels expected an int >= 0, got {config.num_labels!r}")
        if config.num_labels and not config.pooler:
            raise ValueError("BERT: config.num_labels > 0 needs config.pooler: the classifier reads the pooled output")
        if not 0 <= config.pad_token_id < config.vocab_size:
            raise ValueError(
                f"BERT: config.pad_token_id expected an id in [0, vocab_size={config.vocab_size}), "
                f"got {config.pad_token_id}"
            )
        self.config = config
        width = config.n_embd
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.position_embeddings = nn.Embedding(config.block_size, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.embedding_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.encoder = nn.TransformerEncoder(
            config.n_layer,
            width,
            config.n_head,
            dim_feedforward=config.d_ff,
            dropout=config.dropout,
            activation="gelu",
            norm_first=False,
            layer_norm_eps=config.layer_norm_eps,
        )
        if config.pooler:
            self.pooler = nn.Linear(width, width)
        else:
            self.add_module("pooler", None)
        if config.mlm_head:
            self.mlm_dense = nn.Linear(width, width, activation="gelu")
            self.mlm_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
            self.mlm_bias = nn.Parameter(zeros(config.vocab_size))
        else:
            self.add_module("mlm_dense", None)
            self.add_module("mlm_norm", None)
            self.register_parameter("mlm_bias", None)
        if config.num_labels:
            self.classifier_dropout = nn.Dropout(config.dropout)
            self.classifier = nn.Linear(width, config.num_labels)
        else:
            self.add_module("classifier", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        values_view(self.word_embeddings.weight)[self.config.pad_token_id] = 0.0
        if self.mlm_bias is not None:
            init.zeros_(self.mlm_bias)

    def num_parameters(self, include_mlm_head: bool = True) -> int:
        """The number of trainable numbers; the tied decoder weight counts once
        (as the word embeddings). ``include_mlm_head=False`` leaves out the MLM
        head (mlm_dense, mlm_norm, mlm_bias): the encoder with its pooler, what
        Hugging Face's BertModel holds."""
        if not self.config.mlm_head:
            return sum(p.numel() for p in self.parameters())
        head = {id(p) for module in (self.mlm_dense, self.mlm_norm) for p in module.parameters()}
        head.add(id(self.mlm_bias))
        return sum(p.numel() for p in self.parameters() if include_mlm_head or id(p) not in head)

    def encode(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> Tensor:
        """The sequence output: the last encoder layer, float32 [B, T, n_embd]."""
        _check_ids("BERT", "input_ids", input_ids)
        batch, steps = input_ids.shape
        if steps > self.config.block_size:
            raise ValueError(
                f"BERT: argument 'input_ids' has {steps} positions, more than block_size={self.config.block_size}"
            )
        if token_type_ids is not None:
            _check_ids("BERT", "token_type_ids", token_type_ids, (batch, steps))
        key_padding_mask = None
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor):
                raise TypeError(
                    f"BERT: argument 'attention_mask' expected an attnkit.Tensor, got {type(attention_mask).__name__}"
                )
            if tuple(attention_mask.shape) != (batch, steps) or attention_mask.dtype.is_floating_point:
                raise ValueError(
                    f"BERT: argument 'attention_mask' expected a bool or integer tensor of shape "
                    f"{[batch, steps]} (that of input_ids; 1 = token, 0 = padding), got "
                    f"{attention_mask.dtype} of shape {list(attention_mask.shape)}"
                )
            key_padding_mask = attention_mask == 0

        positions = self.position_embeddings(arange(steps, dtype=_dtypes.int64))
        if token_type_ids is None:
            # Every token in segment 0: add the table's first row, no lookup.
            positions = positions + F.narrow(self.token_type_embeddings.weight, 0, 0, 1)
            x = _lookup(self.word_embeddings, input_ids, "input_ids", "vocab_size") + positions
        else:
            x = (
                _lookup(self.word_embeddings, input_ids, "input_ids", "vocab_size")
                + positions
                + _lookup(self.token_type_embeddings, token_type_ids, "token_type_ids", "type_vocab_size")
            )
        x = self.embedding_dropout(self.embedding_norm(x))
        return self.encoder(x, key_padding_mask=key_padding_mask)

    def _require(self, op: str, present: bool, what: str, field: str) -> None:
        if not present:
            raise ValueError(
                f"BERT.{op}: this model has no {what} (config.{field} is off: built or loaded without one)"
            )

    def pool(self, sequence_output: Tensor) -> Tensor:
        """BERT's pooler: tanh(dense(the first token's output)), [B, n_embd]."""
        self._require("pool", self.pooler is not None, "pooler", "pooler")
        first = F.narrow(sequence_output, 1, 0, 1)
        return F.tanh(self.pooler(first.reshape(first.shape[0], first.shape[2])))

    def mlm_head(self, sequence_output: Tensor) -> Tensor:
        """The MLM logits [B, T, vocab_size] from a sequence output."""
        self._require("mlm_head", self.mlm_dense is not None, "masked-LM head", "mlm_head")
        hidden = self.mlm_norm(self.mlm_dense(sequence_output))
        return F.linear(hidden, self.word_embeddings.weight, self.mlm_bias)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> BertOutput:
        """The sequence output and the pooled output (None without a pooler)."""
        sequence_output = self.encode(input_ids, token_type_ids, attention_mask)
        return BertOutput(sequence_output, None if self.pooler is None else self.pool(sequence_output))

    def mlm_logits(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> Tensor:
        """The masked-language-model logits, float32 [B, T, vocab_size] (the
        pooler is not run)."""
        self._require("mlm_logits", self.mlm_dense is not None, "masked-LM head", "mlm_head")
        return self.mlm_head(self.encode(input_ids, token_type_ids, attention_mask))

    def classify(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> Tensor:
        """The sequence classifier's logits, float32 [B, num_labels]:
        ``classifier(dropout(pooled_output))``."""
        self._require("classify", self.classifier is not None, "classifier", "num_labels")
        pooled = self.pool(self.encode(input_ids, token_type_ids, attention_mask))
        return self.classifier(self.classifier_dropout(pooled))

    def save_pretrained(self, path, *, tokenizer=None, max_shard_size="5GB") -> None:
        """Writes a Hugging Face checkpoint directory: BertForMaskedLM with
        the MLM head, BertForSequenceClassification with a classifier,
        BertModel otherwise (see ``attnkit.models.hf.save_pretrained``)."""
        hf_loading.save_pretrained(self, path, tokenizer=tokenizer, max_shard_size=max_shard_size)

    def extra_repr(self) -> str:
        return f"{self.config}"


# ------------------------------------------------------------ MLM masking ---

_TWO_TO_MINUS_32 = 2.0**-32


def _probability(argument: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"mask_tokens: argument '{argument}' expected a probability in [0, 1], got {value!r}")
    return float(value)


def _token_id(argument: str, value, vocab_size: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 0 <= value < vocab_size:
        raise ValueError(
            f"mask_tokens: argument '{argument}' expected a token id in [0, vocab_size={vocab_size}), got {value!r}"
        )
    return int(value)


def mask_tokens(
    input_ids,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids=(),
    special_tokens_mask=None,
    mask_probability: float = 0.15,
    replace_probability: float = 0.8,
    random_probability: float = 0.1,
    generator: Generator | None = None,
    ignore_index: int = -100,
):
    """BERT's masked-LM corruption (section 3.1 of the paper): returns
    ``(masked_ids, labels)``.

    Each position that is not special is chosen with probability
    ``mask_probability`` (independently, as Hugging Face's collator; the
    paper's 15%). A chosen token becomes ``mask_token_id`` with probability
    ``replace_probability`` (80%), a token drawn uniformly from
    [0, vocab_size) with probability ``random_probability`` (10%), and stays
    as it was otherwise (10%). ``labels`` holds the original id at the chosen
    positions and ``ignore_index`` (-100, ``F.cross_entropy``'s default)
    everywhere else, so the loss counts the chosen positions only.

    ``input_ids``: int32/int64 token ids of any shape (an attnkit.Tensor or a
    numpy array; the results are of the same kind and dtype), each in
    [0, vocab_size). Positions never chosen: those holding one of
    ``special_token_ids`` (pass [CLS], [SEP] and [PAD]) and those where the
    bool ``special_tokens_mask`` (input_ids' shape) is True.

    The random numbers come from one stream of ``generator`` (default: the
    process-wide one), three 32-bit Philox words per position: whether it is
    chosen, what it becomes, and the random token (the word times vocab_size,
    divided by 2^32). The same seed gives the same masking on every machine.
    """
    op = "mask_tokens"
    as_tensor = isinstance(input_ids, Tensor)
    ids = values_view(input_ids) if as_tensor else np.asarray(input_ids)
    if ids.dtype not in (np.int32, np.int64):
        raise TypeError(f"{op}: argument 'input_ids' expected int32 or int64 token ids, got {ids.dtype}")
    if not isinstance(vocab_size, numbers.Integral) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise ValueError(f"{op}: argument 'vocab_size' expected a positive int, got {vocab_size!r}")
    vocab_size = int(vocab_size)
    mask_token_id = _token_id("mask_token_id", mask_token_id, vocab_size)
    special = [_token_id("special_token_ids", value, vocab_size) for value in special_token_ids]
    mask_probability = _probability("mask_probability", mask_probability)
    replace_probability = _probability("replace_probability", replace_probability)
    random_probability = _probability("random_probability", random_probability)
    if replace_probability + random_probability > 1.0:
        raise ValueError(
            f"{op}: 'replace_probability' + 'random_probability' expected at most 1, got "
            f"{replace_probability} + {random_probability}"
        )
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: argument 'ignore_index' expected an int, got {type(ignore_index).__name__}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)].flat[0]
        raise ValueError(f"{op}: argument 'input_ids' expected token ids in [0, vocab_size={vocab_size}), got {bad}")
    never = np.isin(ids, special)
    if special_tokens_mask is not None:
        given = np.asarray(
            values_view(special_tokens_mask) if isinstance(special_tokens_mask, Tensor) else special_tokens_mask
        )
        if given.dtype != np.bool_ or given.shape != ids.shape:
            raise ValueError(
                f"{op}: argument 'special_tokens_mask' expected a bool mask of shape "
                f"{list(ids.shape)} (that of input_ids), got {given.dtype} of shape {list(given.shape)}"
            )
        never |= given

    words = random_words(op, 3 * ids.size, generator).reshape(3, *ids.shape)
    # u < p with u = word / 2^32: exactly probability p up to 2^-32.
    chosen = (words[0] * _TWO_TO_MINUS_32 < mask_probability) & ~never
    kind = words[1] * _TWO_TO_MINUS_32
    to_mask = chosen & (kind < replace_probability)
    to_random = chosen & (kind >= replace_probability) & (kind < replace_probability + random_probability)
    # word * V / 2^32 lies in [0, V); each id gets 2^32 / V words, give or take one.
    random_ids = ((words[2].astype(np.uint64) * np.uint64(vocab_size)) >> np.uint64(32)).astype(ids.dtype)

    masked = ids.copy()
    masked[to_mask] = mask_token_id
    masked[to_random] = random_ids[to_random]
    labels = np.where(chosen, ids, np.asarray(ignore_index, ids.dtype)).astype(ids.dtype)
    if as_tensor:
        return from_numpy(masked), from_numpy(labels)
    return masked, labels


__all__ = ["BertConfig", "BERT", "BertOutput", "mask_tokens"]
