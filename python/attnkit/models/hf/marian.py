"""MarianMTModel (OPUS-MT's translation models) as attnkit's encoder-decoder
Transformer.

Marian is the paper's post-LN encoder-decoder with a few choices of its own,
all config fields of attnkit's Transformer: the swish (SiLU) feed-forward,
sinusoid tables with every sine first and every cosine after ("halves", not
interleaved; computed, never stored), embeddings scaled by sqrt(d_model)
(``scale_embedding``), one embedding shared by encoder, decoder and output,
and ``final_logits_bias`` added to the logits. Hugging Face keeps the
attention projections apart; attnkit fuses self-attention's query, key and
value, and cross-attention's key and value. Decoding starts from
``decoder_start_token_id`` (the padding token), which is never produced
(``generation_config.json``'s bad_words_ids): pass it to
``Transformer.beam_search`` as ``banned_tokens``."""

from __future__ import annotations

from ..transformer import Transformer, TransformerConfig
from .registry import Architecture, CheckpointError, Field, Fixed, Weight, concat, register

# config.json's activation_function -> the feed-forward's activation.
_ACTIVATIONS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh"}
_HF_ACTIVATIONS = {"silu": "swish", "gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}


def _check(hf_config: dict) -> None:
    # attnkit's Transformer has one size for both stacks.
    for encoder_field, decoder_field, default in (
        ("encoder_layers", "decoder_layers", 12),
        ("encoder_attention_heads", "decoder_attention_heads", 16),
        ("encoder_ffn_dim", "decoder_ffn_dim", 4096),
        ("vocab_size", "decoder_vocab_size", None),
    ):
        encoder_value = hf_config.get(encoder_field, default)
        decoder_value = hf_config.get(decoder_field) or encoder_value
        if encoder_value != decoder_value:
            raise CheckpointError(
                f"config.json: '{encoder_field}' is {encoder_value} and '{decoder_field}' {decoder_value}; "
                f"attnkit's Transformer has the same in both stacks"
            )
    activation = hf_config.get("activation_function", "gelu")
    if activation not in _ACTIVATIONS:
        raise CheckpointError(
            f"config.json: 'activation_function' is {activation!r}; attnkit's MarianMTModel runs "
            f"{', '.join(map(repr, _ACTIVATIONS))}"
        )


def _derive(hf_config: dict, names: set) -> dict:
    return {
        "tgt_vocab_size": hf_config.get("vocab_size", 58101),
        "activation": _ACTIVATIONS[hf_config.get("activation_function", "gelu")],
        # Marian's own choices, which the paper's Transformer does not make.
        "position_layout": "halves",
        "final_logits_bias": True,
        "share_embeddings": True,
        "norm_first": False,
        "bias": True,
    }


def _to_hf_extra(config: TransformerConfig, base: dict) -> dict:
    return {
        "decoder_layers": config.n_layer,
        "decoder_attention_heads": config.n_head,
        "decoder_ffn_dim": config.d_ff,
        "decoder_vocab_size": config.tgt_vocab_size,
        # An activation Marian has no name for stays as it is, and is refused on the way back.
        "activation_function": _HF_ACTIVATIONS.get(config.activation, config.activation),
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
    }


def _attention(ours: str, theirs: str) -> tuple:
    """Weights of a self-attention: q, k, v fused; out_proj as is."""
    return (
        *(
            Weight(f"{ours}.qkv_proj.{kind}", [f"{theirs}.{part}_proj.{kind}" for part in "qkv"], concat())
            for kind in ("weight", "bias")
        ),
        Weight(f"{ours}.out_proj.weight", f"{theirs}.out_proj.weight"),
        Weight(f"{ours}.out_proj.bias", f"{theirs}.out_proj.bias"),
    )


def _renamed(layer: str, pairs) -> tuple:
    """Weight and bias of modules that only change names, (ours, theirs)
    pairs inside ``layer`` (the same path in both)."""
    return tuple(
        Weight(f"{layer}.{ours}.{kind}", f"{layer}.{theirs}.{kind}")
        for ours, theirs in pairs
        for kind in ("weight", "bias")
    )


# Both name their layers so; the modules inside differ.
_ENCODER, _DECODER = "encoder.layers.{i}", "decoder.layers.{i}"

register(
    Architecture(
        name="MarianMTModel",
        model_type="marian",
        config_class=TransformerConfig,
        model_class=Transformer,
        fields=(
            Field("vocab_size", "src_vocab_size", 58101),
            Field("d_model", "n_embd", 1024),
            Field("encoder_layers", "n_layer", 12),
            Field("encoder_attention_heads", "n_head", 16),
            Field("encoder_ffn_dim", "d_ff", 4096),
            Field("max_position_embeddings", "block_size", 1024),
            Field("dropout", "dropout", 0.1),
            Field("scale_embedding", "scale_embeddings", False),
            Fixed("share_encoder_decoder_embeddings", True),
            Fixed("tie_word_embeddings", True),
        ),
        weights=(
            Weight("src_embedding.weight", "shared.weight"),
            *_attention(f"{_ENCODER}.self_attn", f"{_ENCODER}.self_attn"),
            *_renamed(
                _ENCODER,
                (
                    ("norm1", "self_attn_layer_norm"),
                    ("feed_forward.fc1", "fc1"),
                    ("feed_forward.fc2", "fc2"),
                    ("norm2", "final_layer_norm"),
                ),
            ),
            *_attention(f"{_DECODER}.self_attn", f"{_DECODER}.self_attn"),
            *_renamed(_DECODER, (("cross_attn.q_proj", "encoder_attn.q_proj"),)),
            *(
                Weight(
                    f"{_DECODER}.cross_attn.kv_proj.{kind}",
                    [f"{_DECODER}.encoder_attn.{part}_proj.{kind}" for part in "kv"],
                    concat(count=2),
                )
                for kind in ("weight", "bias")
            ),
            *_renamed(
                _DECODER,
                (
                    ("cross_attn.out_proj", "encoder_attn.out_proj"),
                    ("norm1", "self_attn_layer_norm"),
                    ("norm2", "encoder_attn_layer_norm"),
                    ("norm3", "final_layer_norm"),
                    ("feed_forward.fc1", "fc1"),
                    ("feed_forward.fc2", "fc2"),
                ),
            ),
            Weight("final_logits_bias", "final_logits_bias"),
        ),
        base_prefix="model.",
        heads=("lm_head.", "final_logits_bias"),
        # The sinusoid tables, which transformers 4 saved although they are computed.
        ignore=(r"(encoder|decoder)\.embed_positions\.weight",),
        tied=(
            ("encoder.embed_tokens.weight", "shared.weight"),
            ("decoder.embed_tokens.weight", "shared.weight"),
            ("lm_head.weight", "shared.weight"),
        ),
        check=_check,
        derive=_derive,
        to_hf_extra=_to_hf_extra,
        free_fields=("label_smoothing",),
        default_for_type=True,
    )
)
