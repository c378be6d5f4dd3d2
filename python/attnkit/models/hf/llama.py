"""LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM as attnkit's
Llama (a GPT configured with RMSNorm, rotary positions, SwiGLU and
grouped-query attention; see models/llama.py).

The three share one weight table. The layouts agree with attnkit's but
for two fusions: the q, k and v projections are stacked into ``qkv_proj``
(queries, then keys, then values: the kv heads have fewer rows under
grouped-query attention) and the gate and up projections into the SwiGLU
``fc1`` (gate first). Hugging Face's rotary layout is "rotate half" (pair i
is features i and i + head_dim/2), which attnkit's rope op runs as
``rope_interleaved=False``: the q and k rows load as they are. A model
built with the interleaved pairing saves with its q and k rows permuted
into the rotate-half order (the same model; see ``F.rope``).

config.json carries the rotary settings in two forms: transformers 4's
``rope_theta`` and ``rope_scaling``, and transformers 5's
``rope_parameters``. Both load; saving writes both, so either version
reads the checkpoint back.
"""

from __future__ import annotations

import numpy as np

from ...nn.functional.position import ROPE_SCALING_TYPES
from ..llama import Llama, LlamaConfig
from .registry import Architecture, CheckpointError, Field, Fixed, Transform, Weight, concat, register

_DEFAULT_THETA = 10000.0


# ------------------------------------------------------------- the rope ---


def _rope(hf_config: dict, default_theta: float = _DEFAULT_THETA) -> dict:
    """rope_theta and rope_scaling from either form of config.json
    (``default_theta``: the class's, for a config.json that has none)."""
    parameters = hf_config.get("rope_parameters")
    scaling = hf_config.get("rope_scaling")
    if parameters is not None and not isinstance(parameters, dict):
        raise CheckpointError(f"config.json: 'rope_parameters' expected a dict, got {parameters!r}")
    if scaling is not None and not isinstance(scaling, dict):
        raise CheckpointError(f"config.json: 'rope_scaling' expected a dict or null, got {scaling!r}")
    if parameters and any(isinstance(value, dict) for value in parameters.values()):
        raise CheckpointError(
            "config.json: 'rope_parameters' differ by layer type; attnkit's Llama has one rotary embedding"
        )
    # transformers reads rope_scaling first, then rope_parameters.
    settings = dict(scaling or parameters or {})
    theta = settings.pop("rope_theta", None)
    if theta is None:
        theta = hf_config.get("rope_theta") or (parameters or {}).get("rope_theta") or default_theta
    kind = settings.pop("rope_type", settings.pop("type", "default"))
    settings.pop("type", None)
    partial = settings.pop("partial_rotary_factor", hf_config.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise CheckpointError(
            f"config.json: 'partial_rotary_factor' is {partial!r}; attnkit's Llama rotates the whole head"
        )
    if kind not in ROPE_SCALING_TYPES:
        raise CheckpointError(
            f"config.json: the rope type is {kind!r}; attnkit's Llama runs {', '.join(ROPE_SCALING_TYPES)}"
        )
    if kind == "default":
        return {"rope_theta": float(theta), "rope_scaling": None}
    if kind == "llama3":
        settings.setdefault("original_max_position_embeddings", hf_config.get("max_position_embeddings", 2048))
    return {"rope_theta": float(theta), "rope_scaling": {"rope_type": kind, **settings}}


def _rope_to_hf(config) -> dict:
    scaling = None if config.rope_scaling is None else dict(config.rope_scaling)
    if scaling is not None:
        kind = scaling.pop("rope_type", scaling.pop("type", "default"))
        scaling = {"rope_type": kind, **scaling}
    parameters = {"rope_type": "default", **(scaling or {}), "rope_theta": config.rope_theta}
    return {"rope_theta": config.rope_theta, "rope_scaling": scaling, "rope_parameters": parameters}


# --------------------------------------------------------- the weights ---


def _head_dim(config) -> int:
    return config.head_dim or config.n_embd // config.n_head


def _qkv_rows(config) -> list:
    head_dim = _head_dim(config)
    kv_rows = (config.n_kv_head or config.n_head) * head_dim
    return [config.n_head * head_dim, kv_rows, kv_rows]


def _interleaved_order(rows: int, head_dim: int) -> np.ndarray:
    """Row k of the interleaved layout is row order[k] of the rotate-half
    one: within each head, pair i is (i, i + D/2) there and (2i, 2i+1) here."""
    half = np.arange(head_dim // 2)
    per_head = np.stack([half, half + head_dim // 2], axis=1).reshape(-1)
    return (np.arange(0, rows, head_dim)[:, None] + per_head[None, :]).reshape(-1)


def _qkv_transform() -> Transform:
    """q, k and v stacked into qkv_proj; for an interleaved-rope model the
    q and k rows are reordered between the two rotary layouts."""
    stack = concat(_qkv_rows)

    def to_attnkit(arrays, config):
        if config.rope_interleaved:
            head_dim = _head_dim(config)
            arrays = [a[_interleaved_order(len(a), head_dim)] for a in arrays[:2]] + [arrays[2]]
        return stack.to_attnkit(arrays, config)

    def to_hf(array, config):
        arrays = stack.to_hf(array, config)
        if config.rope_interleaved:
            head_dim = _head_dim(config)
            for index in (0, 1):
                rotate_half = np.empty_like(arrays[index])
                rotate_half[_interleaved_order(len(arrays[index]), head_dim)] = arrays[index]
                arrays[index] = rotate_half
        return arrays

    return Transform(
        "qkv(rope layout)", to_attnkit, to_hf, stack.hf_shapes, stacked=lambda config: not config.rope_interleaved
    )


_QKV = _qkv_transform()
_GATE_UP = concat(count=2)

WEIGHTS = (
    Weight("wte.weight", "embed_tokens.weight"),
    Weight("blocks.{i}.norm1.weight", "layers.{i}.input_layernorm.weight"),
    Weight(
        "blocks.{i}.self_attn.qkv_proj.weight",
        [f"layers.{{i}}.self_attn.{x}_proj.weight" for x in "qkv"],
        _QKV,
    ),
    Weight("blocks.{i}.self_attn.qkv_proj.bias", [f"layers.{{i}}.self_attn.{x}_proj.bias" for x in "qkv"], _QKV),
    Weight("blocks.{i}.self_attn.out_proj.weight", "layers.{i}.self_attn.o_proj.weight"),
    Weight("blocks.{i}.self_attn.out_proj.bias", "layers.{i}.self_attn.o_proj.bias"),
    Weight("blocks.{i}.norm2.weight", "layers.{i}.post_attention_layernorm.weight"),
    Weight(
        "blocks.{i}.feed_forward.fc1.weight",
        ["layers.{i}.mlp.gate_proj.weight", "layers.{i}.mlp.up_proj.weight"],
        _GATE_UP,
    ),
    Weight(
        "blocks.{i}.feed_forward.fc1.bias", ["layers.{i}.mlp.gate_proj.bias", "layers.{i}.mlp.up_proj.bias"], _GATE_UP
    ),
    Weight("blocks.{i}.feed_forward.fc2.weight", "layers.{i}.mlp.down_proj.weight"),
    Weight("blocks.{i}.feed_forward.fc2.bias", "layers.{i}.mlp.down_proj.bias"),
    Weight("ln_f.weight", "norm.weight"),
    Weight("lm_head.weight", "lm_head.weight"),
)

# The settings every one of the three has, HF name -> attnkit name, with
# transformers' defaults for a config.json that lacks them.
COMMON_FIELDS = (
    Field("vocab_size", "vocab_size", 32000),
    Field("max_position_embeddings", "block_size", 2048),
    Field("num_hidden_layers", "n_layer", 32),
    Field("num_attention_heads", "n_head", 32),
    Field("hidden_size", "n_embd", 4096),
    Field("intermediate_size", "d_ff", 11008),
    Field("rms_norm_eps", "norm_eps", 1e-6),
    Field("tie_word_embeddings", "tie_embeddings", False),
    Fixed("hidden_act", "silu"),
    Fixed("attention_dropout", 0.0, also=(0,)),
)


def _common(hf_config: dict, default_theta: float = _DEFAULT_THETA) -> dict:
    heads = hf_config.get("num_attention_heads", 32)
    head_dim = hf_config.get("head_dim")
    if head_dim == hf_config.get("hidden_size", 4096) // heads:
        head_dim = None  # the default, as attnkit's config spells it
    values = {"n_kv_head": hf_config.get("num_key_value_heads") or heads, "head_dim": head_dim}
    values.update(_rope(hf_config, default_theta))
    return values


def _common_to_hf(config) -> dict:
    return {
        "num_key_value_heads": config.n_kv_head or config.n_head,
        "head_dim": _head_dim(config),
        **_rope_to_hf(config),
    }


def _biases(config) -> tuple:
    """(q/k/v, o, mlp) biases as the model has them."""
    pick = lambda value: config.bias if value is None else value  # noqa: E731
    return pick(config.qkv_bias), pick(config.out_bias), pick(config.mlp_bias)


# ---------------------------------------------------------------- Llama ---


def _llama_derive(hf_config: dict, names: set) -> dict:
    values = _common(hf_config)
    attention_bias = bool(hf_config.get("attention_bias", False))
    values.update(qkv_bias=attention_bias, out_bias=attention_bias, mlp_bias=bool(hf_config.get("mlp_bias", False)))
    return values


def _llama_to_hf(config, base: dict) -> dict:
    qkv, out, mlp = _biases(config)
    return {**_common_to_hf(config), "attention_bias": qkv, "mlp_bias": mlp}


# Dropout (the Llama family's checkpoints have attention dropout only, fixed
# at 0) and the rope pairing, which saving converts to the rotate-half layout.
LLAMA_FREE_FIELDS = ("dropout", "rope_interleaved")


def _llama_family(name: str, model_type: str, derive, to_hf_extra, ignore: tuple) -> Architecture:
    """One class of the Llama family: the same fields, weights and names;
    what differs is derived from and written to config.json."""
    return Architecture(
        name=name,
        model_type=model_type,
        config_class=LlamaConfig,
        model_class=Llama,
        fields=COMMON_FIELDS,
        weights=WEIGHTS,
        base_prefix="model.",
        heads=("lm_head.",),
        free_fields=LLAMA_FREE_FIELDS,
        ignore=ignore,
        tied=(("lm_head.weight", "embed_tokens.weight"),),
        derive=derive,
        to_hf_extra=to_hf_extra,
        default_for_type=True,
    )


LLAMA = register(
    _llama_family(
        "LlamaForCausalLM",
        "llama",
        _llama_derive,
        _llama_to_hf,
        ignore=(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"rotary_emb\.inv_freq"),
    )
)


# -------------------------------------------------------------- Mistral ---


def _mistral_derive(hf_config: dict, names: set) -> dict:
    values = _common(hf_config)
    # transformers' MistralConfig defaults to a window of 4096; null is none.
    window = hf_config.get("sliding_window", 4096)
    values.update(sliding_window=window, qkv_bias=False, out_bias=False, mlp_bias=False)
    return values


def _mistral_to_hf(config, base: dict) -> dict:
    return {**_common_to_hf(config), "sliding_window": config.sliding_window}


MISTRAL = register(
    _llama_family(
        "MistralForCausalLM",
        "mistral",
        _mistral_derive,
        _mistral_to_hf,
        ignore=(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq",),
    )
)


# ---------------------------------------------------------------- Qwen2 ---

_LAYER_TYPES = ("full_attention", "sliding_attention")


def _qwen2_windows(hf_config: dict) -> dict:
    """sliding_window and the layers it applies to, as transformers reads
    them: only with use_sliding_window, on the layers ``layer_types`` marks
    "sliding_attention" (by default those from max_window_layers on)."""
    layers = hf_config.get("num_hidden_layers", 24)
    window = hf_config.get("sliding_window", 4096) if hf_config.get("use_sliding_window", False) else None
    if window is None:
        return {"sliding_window": None, "sliding_window_layers": None}
    types = hf_config.get("layer_types")
    if types is None:
        first = hf_config.get("max_window_layers", 28)
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    if not isinstance(types, list) or len(types) != layers or any(t not in _LAYER_TYPES for t in types):
        raise CheckpointError(
            f"config.json: 'layer_types' expected {layers} entries of {', '.join(_LAYER_TYPES)}, got {types!r}"
        )
    windowed = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
    if not windowed:
        return {"sliding_window": None, "sliding_window_layers": None}
    return {"sliding_window": window, "sliding_window_layers": None if len(windowed) == layers else windowed}


def _qwen2_derive(hf_config: dict, names: set) -> dict:
    values = _common(hf_config)
    values.update(_qwen2_windows(hf_config))
    values.update(qkv_bias=True, out_bias=False, mlp_bias=False)
    return values


def _qwen2_to_hf(config, base: dict) -> dict:
    layers = config.n_layer
    if config.sliding_window is None:
        windowed = []
    else:
        windowed = list(range(layers)) if config.sliding_window_layers is None else sorted(config.sliding_window_layers)
    return {
        **_common_to_hf(config),
        "use_sliding_window": bool(windowed),
        "sliding_window": config.sliding_window,
        # transformers 4 reads max_window_layers (the first windowed layer); 5 reads layer_types.
        "max_window_layers": windowed[0] if windowed else layers,
        "layer_types": ["sliding_attention" if i in windowed else "full_attention" for i in range(layers)],
    }


QWEN2 = register(
    _llama_family(
        "Qwen2ForCausalLM",
        "qwen2",
        _qwen2_derive,
        _qwen2_to_hf,
        ignore=(r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq",),
    )
)
