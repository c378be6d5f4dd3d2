"""ViTForImageClassification as attnkit's ViT (models/vit.py).

The layouts agree but for one fusion: the query, key and value projections
are stacked into ``qkv_proj``. The patch embedding is a Conv2d in both
([hidden, channels, patch, patch]); attnkit runs it as a patchify, whose
patches are flattened (channel, row, column) as the Conv2d's weight is, and
one GEMM, so it loads as it is. The [CLS] token, the position embeddings
([CLS] first), the pre-LN blocks (``layernorm_before`` and
``layernorm_after``), the final ``layernorm`` and the classifier on the
[CLS] state map one to one.

The number of classes is the length of config.json's ``id2label`` (as
transformers reads it); images are square, ``image_size`` a multiple of
``patch_size``.
"""

from __future__ import annotations

from ..vit import ViT, ViTConfig
from .registry import Architecture, CheckpointError, Field, Fixed, Weight, concat, register

_QKV = concat(count=3)
_LAYER = "encoder.layer.{i}."

WEIGHTS = (
    Weight("patch_embed.weight", "embeddings.patch_embeddings.projection.weight"),
    Weight("patch_embed.bias", "embeddings.patch_embeddings.projection.bias"),
    Weight("cls_token", "embeddings.cls_token"),
    Weight("pos_embed", "embeddings.position_embeddings"),
    *(
        Weight(f"blocks.{{i}}.{ours}.{kind}", f"{_LAYER}{theirs}.{kind}")
        for ours, theirs in (
            ("norm1", "layernorm_before"),
            ("self_attn.out_proj", "attention.output.dense"),
            ("norm2", "layernorm_after"),
            ("feed_forward.fc1", "intermediate.dense"),
            ("feed_forward.fc2", "output.dense"),
        )
        for kind in ("weight", "bias")
    ),
    *(
        Weight(
            f"blocks.{{i}}.self_attn.qkv_proj.{kind}",
            [f"{_LAYER}attention.attention.{x}.{kind}" for x in ("query", "key", "value")],
            _QKV,
        )
        for kind in ("weight", "bias")
    ),
    Weight("ln_f.weight", "layernorm.weight"),
    Weight("ln_f.bias", "layernorm.bias"),
    Weight("head.weight", "classifier.weight"),
    Weight("head.bias", "classifier.bias"),
)


def _square(hf_config: dict, name: str, default: int) -> int:
    """image_size or patch_size: an int, or a [height, width] pair of equal sides."""
    value = hf_config.get(name, default)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"config.json: '{name}' is {value!r}; attnkit's ViT takes square images and patches")
        value = value[0]
    return value


def _derive(hf_config: dict, names: set) -> dict:
    labels = hf_config.get("id2label")
    if labels is not None and not isinstance(labels, dict):
        raise CheckpointError(f"config.json: 'id2label' expected a dict, got {labels!r}")
    return {
        "image_size": _square(hf_config, "image_size", 224),
        "patch_size": _square(hf_config, "patch_size", 16),
        # transformers' default: two labels
        "num_classes": len(labels) if labels else hf_config.get("num_labels", 2),
    }


def _to_hf(config, base: dict) -> dict:
    labels = base.get("id2label")
    if not isinstance(labels, dict) or len(labels) != config.num_classes:
        labels = {str(i): f"LABEL_{i}" for i in range(config.num_classes)}
    return {
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "id2label": labels,
        "label2id": {label: int(i) for i, label in labels.items()},
    }


VIT = register(
    Architecture(
        name="ViTForImageClassification",
        model_type="vit",
        config_class=ViTConfig,
        model_class=ViT,
        fields=(
            Field("num_channels", "num_channels", 3),
            Field("num_hidden_layers", "n_layer", 12),
            Field("num_attention_heads", "n_head", 12),
            Field("hidden_size", "n_embd", 768),
            Field("intermediate_size", "d_ff", 3072),
            Field("layer_norm_eps", "layer_norm_eps", 1e-12),
            Field("hidden_dropout_prob", "dropout", 0.0),
            Fixed("hidden_act", "gelu"),
            Fixed("qkv_bias", True),
        ),
        weights=WEIGHTS,
        base_prefix="vit.",
        heads=("classifier.",),
        derive=_derive,
        to_hf_extra=_to_hf,
        # Training only: the eval-mode model is the same for every dropout.
        free_fields=("dropout",),
        default_for_type=True,
    )
)
