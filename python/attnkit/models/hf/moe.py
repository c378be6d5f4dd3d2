"""MixtralForCausalLM and Qwen2MoeForCausalLM: the Llama family's decoder
with a sparse mixture of experts in place of the feed-forward, as attnkit's
Llama with ``n_experts`` set (``nn.MoEFeedForward`` in the blocks).

Both route each token to its ``num_experts_per_tok`` most probable experts
(a softmax over the router ``gate``'s logits); each expert is a SwiGLU
feed-forward without biases.

- Mixtral renormalizes the top-k probabilities to sum 1, has every block
  sparse and its experts ``intermediate_size`` wide; its attention is
  Mistral's (grouped-query, an optional sliding window, no biases).
- Qwen2-MoE renormalizes only with ``norm_topk_prob``; its experts are
  ``moe_intermediate_size`` wide, and every token also runs through a shared
  expert (``shared_expert_intermediate_size``) scaled by the sigmoid of
  ``shared_expert_gate``. The blocks of ``mlp_only_layers``, and those
  whose index + 1 is not a multiple of ``decoder_sparse_step``, keep a
  dense SwiGLU of ``intermediate_size``. Its attention is Qwen2's (q, k, v
  biases).

Checkpoints hold one tensor per expert and projection (Mixtral's w1 gate,
w3 up and w2 down; Qwen2-MoE's gate_proj, up_proj and down_proj), as
transformers saves them. attnkit's experts are stacked ([n_experts, 2 d_ff,
d_model] and [n_experts, d_model, d_ff]), so the expert weights are copied
into place (widened from bfloat16 there) rather than memory-mapped; every
other weight loads as in the Llama family.
"""

from __future__ import annotations

import dataclasses

from ..llama import Llama, LlamaConfig
from .llama import (
    COMMON_FIELDS,
    LLAMA_FREE_FIELDS,
    WEIGHTS,
    _biases,
    _common,
    _common_to_hf,
    _qwen2_derive,
)
from .registry import Architecture, CheckpointError, Field, Weight, concat, experts, register

# The attention, norms, embeddings and (for Qwen2-MoE's dense blocks) the
# dense feed-forward, as the Llama family names them.
_BASE_WEIGHTS = tuple(w for w in WEIGHTS if ".feed_forward." not in w.attnkit)
_DENSE_WEIGHTS = tuple(w for w in WEIGHTS if ".feed_forward." in w.attnkit)
_ROTARY_BUFFERS = (r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)
# The load-balancing loss's weight shapes training only (and transformers
# computes its loss otherwise): it is not written to config.json.
_FREE_FIELDS = (*LLAMA_FREE_FIELDS, "moe_aux_loss_coef")


def _with_defaults(fields: tuple, **defaults) -> tuple:
    """``fields`` with the class's own defaults for the HF names given."""
    return tuple(
        dataclasses.replace(entry, default=defaults[entry.hf])
        if isinstance(entry, Field) and entry.hf in defaults
        else entry
        for entry in fields
    )


def _expert_weights(block: str, gate: str, up: str, down: str) -> tuple:
    """The router and the stacked experts of the block ``block`` names."""
    return (
        Weight("blocks.{i}.feed_forward.router.weight", f"layers.{{i}}.{block}.gate.weight"),
        Weight(
            "blocks.{i}.feed_forward.fc1_weight",
            [f"layers.{{i}}.{block}.experts.{{e}}.{gate}.weight", f"layers.{{i}}.{block}.experts.{{e}}.{up}.weight"],
            experts(2),
        ),
        Weight("blocks.{i}.feed_forward.fc2_weight", f"layers.{{i}}.{block}.experts.{{e}}.{down}.weight", experts()),
    )


# -------------------------------------------------------------- Mixtral ---

_MIXTRAL_THETA = 1_000_000.0


def _mixtral_derive(hf_config: dict, names: set) -> dict:
    values = _common(hf_config, _MIXTRAL_THETA)
    values.update(
        # transformers' MixtralConfig has no window unless config.json gives one.
        sliding_window=hf_config.get("sliding_window"),
        qkv_bias=False,
        out_bias=False,
        mlp_bias=False,
        moe_renormalize=True,
    )
    return values


def _mixtral_to_hf(config, base: dict) -> dict:
    return {**_common_to_hf(config), "sliding_window": config.sliding_window}


MIXTRAL = register(
    Architecture(
        name="MixtralForCausalLM",
        model_type="mixtral",
        config_class=LlamaConfig,
        model_class=Llama,
        fields=(
            *_with_defaults(
                COMMON_FIELDS,
                intermediate_size=14336,
                max_position_embeddings=4096 * 32,
                rms_norm_eps=1e-5,
            ),
            Field("num_local_experts", "n_experts", 8),
            Field("num_experts_per_tok", "top_k", 2),
        ),
        weights=(*_BASE_WEIGHTS, *_expert_weights("block_sparse_moe", "w1", "w3", "w2")),
        base_prefix="model.",
        heads=("lm_head.",),
        ignore=_ROTARY_BUFFERS,
        tied=(("lm_head.weight", "embed_tokens.weight"),),
        derive=_mixtral_derive,
        to_hf_extra=_mixtral_to_hf,
        free_fields=_FREE_FIELDS,
        default_for_type=True,
    )
)


# ------------------------------------------------------------ Qwen2-MoE ---


def _positive_int(hf_config: dict, name: str, default: int) -> int:
    value = hf_config.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CheckpointError(f"config.json: '{name}' expected an int >= 1, got {value!r}")
    return value


def _qwen2_moe_layers(hf_config: dict) -> list | None:
    """The sparse blocks, as transformers picks them: not in
    ``mlp_only_layers``, and (index + 1) a multiple of ``decoder_sparse_step``
    (None: every block)."""
    layers = _positive_int(hf_config, "num_hidden_layers", 24)
    step = _positive_int(hf_config, "decoder_sparse_step", 1)
    dense = hf_config.get("mlp_only_layers") or []
    if not isinstance(dense, list) or any(not isinstance(i, int) or isinstance(i, bool) for i in dense):
        raise CheckpointError(f"config.json: 'mlp_only_layers' expected a list of block indices, got {dense!r}")
    sparse = [i for i in range(layers) if i not in dense and (i + 1) % step == 0]
    return None if len(sparse) == layers else sparse


def _qwen2_moe_derive(hf_config: dict, names: set) -> dict:
    if hf_config.get("num_experts", 60) == 0:
        raise CheckpointError(
            "config.json: 'num_experts' is 0 (every block dense); load it as a Qwen2ForCausalLM checkpoint"
        )
    if hf_config.get("use_sliding_window", False) or "sliding_attention" in (hf_config.get("layer_types") or []):
        raise CheckpointError(
            "config.json: 'use_sliding_window' is set; attnkit loads Qwen2MoeForCausalLM with full attention only"
        )
    values = _qwen2_derive(hf_config, names)
    values.update(qkv_bias=bool(hf_config.get("qkv_bias", True)), moe_layers=_qwen2_moe_layers(hf_config))
    return values


def _qwen2_moe_to_hf(config, base: dict) -> dict:
    sparse = set(range(config.n_layer) if config.moe_layers is None else config.moe_layers)
    qkv, _, _ = _biases(config)
    return {
        **_common_to_hf(config),
        "qkv_bias": qkv,
        "use_sliding_window": False,
        "layer_types": ["full_attention"] * config.n_layer,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [i for i in range(config.n_layer) if i not in sparse],
    }


QWEN2_MOE = register(
    Architecture(
        name="Qwen2MoeForCausalLM",
        model_type="qwen2_moe",
        config_class=LlamaConfig,
        model_class=Llama,
        fields=(
            *_with_defaults(
                COMMON_FIELDS,
                vocab_size=151936,
                max_position_embeddings=32768,
                num_hidden_layers=24,
                num_attention_heads=16,
                hidden_size=2048,
                intermediate_size=5632,
            ),
            Field("num_experts", "n_experts", 60),
            Field("num_experts_per_tok", "top_k", 4),
            Field("moe_intermediate_size", "expert_d_ff", 1408),
            Field("shared_expert_intermediate_size", "shared_expert_d_ff", 5632),
            Field("norm_topk_prob", "moe_renormalize", False),
        ),
        weights=(
            *_BASE_WEIGHTS,
            *_DENSE_WEIGHTS,
            *_expert_weights("mlp", "gate_proj", "up_proj", "down_proj"),
            Weight(
                "blocks.{i}.feed_forward.shared_expert.fc1.weight",
                ["layers.{i}.mlp.shared_expert.gate_proj.weight", "layers.{i}.mlp.shared_expert.up_proj.weight"],
                concat(count=2),
            ),
            Weight("blocks.{i}.feed_forward.shared_expert.fc2.weight", "layers.{i}.mlp.shared_expert.down_proj.weight"),
            Weight("blocks.{i}.feed_forward.shared_expert_gate.weight", "layers.{i}.mlp.shared_expert_gate.weight"),
        ),
        base_prefix="model.",
        heads=("lm_head.",),
        ignore=_ROTARY_BUFFERS,
        tied=(("lm_head.weight", "embed_tokens.weight"),),
        derive=_qwen2_moe_derive,
        to_hf_extra=_qwen2_moe_to_hf,
        free_fields=_FREE_FIELDS,
        default_for_type=True,
    )
)
