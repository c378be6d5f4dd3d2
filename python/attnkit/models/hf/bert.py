"""BertModel, BertForMaskedLM and BertForSequenceClassification as attnkit's
BERT.

Hugging Face keeps the query, key and value projections apart; attnkit fuses
them into one ``qkv_proj`` (concatenated by rows). Which heads the model
gets follows the class: BertModel has none (a checkpoint without the MLM
head loads as the encoder alone, never with a random head), BertForMaskedLM
the MLM head (its decoder tied to the word embeddings), and
BertForSequenceClassification a classifier with ``num_labels`` outputs. The
pooler is there when the checkpoint has it."""

from __future__ import annotations

from ..bert import BERT, BertConfig
from .registry import Architecture, Field, Fixed, Weight, concat, register

_FIELDS = (
    Field("vocab_size", "vocab_size", 30522),
    Field("hidden_size", "n_embd", 768),
    Field("num_hidden_layers", "n_layer", 12),
    Field("num_attention_heads", "n_head", 12),
    Field("intermediate_size", "d_ff", 3072),
    Field("max_position_embeddings", "block_size", 512),
    Field("type_vocab_size", "type_vocab_size", 2),
    Field("layer_norm_eps", "layer_norm_eps", 1e-12),
    Field("pad_token_id", "pad_token_id", 0),
    Field("hidden_dropout_prob", "dropout", 0.1),
    Fixed("hidden_act", "gelu"),
    Fixed("position_embedding_type", "absolute"),
    Fixed("is_decoder", False),
    Fixed("add_cross_attention", False),
)

_LAYER = "encoder.layer.{i}."
_WEIGHTS = (
    Weight("word_embeddings.weight", "embeddings.word_embeddings.weight"),
    Weight("position_embeddings.weight", "embeddings.position_embeddings.weight"),
    Weight("token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    Weight("embedding_norm.weight", "embeddings.LayerNorm.weight"),
    Weight("embedding_norm.bias", "embeddings.LayerNorm.bias"),
    *(
        Weight(
            f"encoder.layers.{{i}}.self_attn.qkv_proj.{kind}",
            [f"{_LAYER}attention.self.{part}.{kind}" for part in ("query", "key", "value")],
            concat(),
        )
        for kind in ("weight", "bias")
    ),
    *(
        Weight(f"encoder.layers.{{i}}.{ours}.{kind}", f"{_LAYER}{theirs}.{kind}")
        for ours, theirs in (
            ("self_attn.out_proj", "attention.output.dense"),
            ("norm1", "attention.output.LayerNorm"),
            ("feed_forward.fc1", "intermediate.dense"),
            ("feed_forward.fc2", "output.dense"),
            ("norm2", "output.LayerNorm"),
        )
        for kind in ("weight", "bias")
    ),
    Weight("pooler.weight", "pooler.dense.weight"),
    Weight("pooler.bias", "pooler.dense.bias"),
    Weight("mlm_dense.weight", "cls.predictions.transform.dense.weight"),
    Weight("mlm_dense.bias", "cls.predictions.transform.dense.bias"),
    Weight("mlm_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
    Weight("mlm_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
    Weight("mlm_bias", "cls.predictions.bias"),
    Weight("classifier.weight", "classifier.weight"),
    Weight("classifier.bias", "classifier.bias"),
)

_HEADS = ("cls.", "classifier.")
# The position-id buffer that transformers before 4.31 saved.
_IGNORE = (r"embeddings\.position_ids",)


def _heads(mlm_head: bool, classifier: bool):
    """``derive`` for a class: its heads, and the pooler when the checkpoint
    has one. The label count is id2label's (transformers' default: 2)."""

    def derive(hf_config: dict, names: set) -> dict:
        labels = hf_config.get("id2label")
        count = len(labels) if isinstance(labels, dict) and labels else int(hf_config.get("num_labels", 2))
        pooler = "pooler.dense.weight" in names
        return {"pooler": pooler, "mlm_head": mlm_head, "num_labels": count if classifier else 0}

    return derive


def _dropouts(config: BertConfig) -> dict:
    # One dropout in attnkit for BERT's two.
    return {"attention_probs_dropout_prob": config.dropout}


def _label_names(config: BertConfig, base: dict) -> dict:
    """id2label/label2id: the loaded checkpoint's names when their count
    still fits, else LABEL_0, LABEL_1, ... as transformers names them."""
    names = base.get("id2label")
    if not (isinstance(names, dict) and len(names) == config.num_labels):
        names = {str(i): f"LABEL_{i}" for i in range(config.num_labels)}
    return {
        "attention_probs_dropout_prob": config.dropout,
        "id2label": names,
        "label2id": {label: int(i) for i, label in names.items()},
    }


def _bert_class(name: str, **details) -> Architecture:
    """One of BERT's Hugging Face classes: BERT's config and encoder weights
    (and the heads it may hold); ``details`` give the rest."""
    return Architecture(
        name=name,
        model_type="bert",
        config_class=BertConfig,
        model_class=BERT,
        weights=_WEIGHTS,
        heads=_HEADS,
        **details,
    )


register(
    _bert_class(
        "BertForSequenceClassification",
        fields=_FIELDS,
        base_prefix="bert.",
        ignore=_IGNORE,
        derive=_heads(mlm_head=False, classifier=True),
        to_hf_extra=_label_names,
    )
)

register(
    _bert_class(
        "BertForMaskedLM",
        fields=(*_FIELDS, Fixed("tie_word_embeddings", True)),
        base_prefix="bert.",
        # Checkpoints published as BertForMaskedLM (bert-base-uncased) also
        # carry BertForPreTraining's next-sentence head, which this class
        # has no use for (transformers drops it too).
        ignore=(*_IGNORE, r"cls\.seq_relationship\.(weight|bias)"),
        tied=(
            ("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
            ("cls.predictions.decoder.bias", "cls.predictions.bias"),
        ),
        derive=_heads(mlm_head=True, classifier=False),
        to_hf_extra=lambda config, base: _dropouts(config),
    )
)

register(
    _bert_class(
        "BertModel",
        fields=_FIELDS,
        ignore=_IGNORE,
        derive=_heads(mlm_head=False, classifier=False),
        to_hf_extra=lambda config, base: _dropouts(config),
        default_for_type=True,
    )
)
