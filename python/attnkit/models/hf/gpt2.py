"""GPT2LMHeadModel (Hugging Face's GPT-2) as attnkit's GPT.

The layouts agree but for one thing: GPT-2's projections are Conv1D
layers, whose weights are stored [in, out], the transpose of a Linear's;
c_attn already holds the query, key and value columns in attnkit's order.
The LM head is the token embedding (tied)."""

from __future__ import annotations

from ..gpt import GPT, GPTConfig
from .registry import Architecture, CheckpointError, Field, Fixed, Weight, register, transpose


def _check(hf_config: dict) -> None:
    inner = hf_config.get("n_inner")
    width = hf_config.get("n_embd", 768)
    if inner is not None and inner != 4 * width:
        raise CheckpointError(
            f"config.json: 'n_inner' is {inner}; attnkit's GPT-2 has a feed-forward of 4 * n_embd = {4 * width}"
        )


def _to_hf_extra(config: GPTConfig, base: dict) -> dict:
    return {
        "n_inner": None,
        # One dropout in attnkit for GPT-2's three.
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        # The loaded checkpoint's, else none: GPT2Config's default, 50256, is
        # GPT-2's own vocabulary's <|endoftext|>, past an attnkit model's.
        "bos_token_id": base.get("bos_token_id"),
        "eos_token_id": base.get("eos_token_id"),
    }


GPT2 = register(
    Architecture(
        name="GPT2LMHeadModel",
        model_type="gpt2",
        config_class=GPTConfig,
        model_class=GPT,
        fields=(
            Field("vocab_size", "vocab_size", 50257),
            Field("n_positions", "block_size", 1024),
            Field("n_layer", "n_layer", 12),
            Field("n_head", "n_head", 12),
            Field("n_embd", "n_embd", 768),
            Field("resid_pdrop", "dropout", 0.1),
            # gelu_pytorch_tanh is the same tanh approximation as gelu_new.
            Fixed("activation_function", "gelu_new", also=("gelu_pytorch_tanh",)),
            Fixed("layer_norm_epsilon", 1e-5),
            Fixed("scale_attn_weights", True),
            Fixed("scale_attn_by_inverse_layer_idx", False),
            Fixed("add_cross_attention", False),
            Fixed("tie_word_embeddings", True),
        ),
        weights=(
            Weight("wte.weight", "wte.weight"),
            Weight("wpe.weight", "wpe.weight"),
            Weight("blocks.{i}.norm1.weight", "h.{i}.ln_1.weight"),
            Weight("blocks.{i}.norm1.bias", "h.{i}.ln_1.bias"),
            Weight("blocks.{i}.self_attn.qkv_proj.weight", "h.{i}.attn.c_attn.weight", transpose),
            Weight("blocks.{i}.self_attn.qkv_proj.bias", "h.{i}.attn.c_attn.bias"),
            Weight("blocks.{i}.self_attn.out_proj.weight", "h.{i}.attn.c_proj.weight", transpose),
            Weight("blocks.{i}.self_attn.out_proj.bias", "h.{i}.attn.c_proj.bias"),
            Weight("blocks.{i}.norm2.weight", "h.{i}.ln_2.weight"),
            Weight("blocks.{i}.norm2.bias", "h.{i}.ln_2.bias"),
            Weight("blocks.{i}.feed_forward.fc1.weight", "h.{i}.mlp.c_fc.weight", transpose),
            Weight("blocks.{i}.feed_forward.fc1.bias", "h.{i}.mlp.c_fc.bias"),
            Weight("blocks.{i}.feed_forward.fc2.weight", "h.{i}.mlp.c_proj.weight", transpose),
            Weight("blocks.{i}.feed_forward.fc2.bias", "h.{i}.mlp.c_proj.bias"),
            Weight("ln_f.weight", "ln_f.weight"),
            Weight("ln_f.bias", "ln_f.bias"),
        ),
        base_prefix="transformer.",
        heads=("lm_head.",),
        # The causal-mask buffers that transformers before 4.31 saved.
        ignore=(r"h\.\d+\.attn\.bias", r"h\.\d+\.attn\.masked_bias"),
        tied=(("lm_head.weight", "wte.weight"),),
        check=_check,
        to_hf_extra=_to_hf_extra,
        default_for_type=True,
    )
)
