"""GPT-2 (Radford et al., 2019): a decoder-only Transformer with learned
positions, pre-LN blocks, tanh-GELU feed-forward and an LM head tied to the
token embedding. Config names follow nanoGPT, so its configs carry over.

The same decoder, configured differently, is the Llama family (see
``llama.py``): every difference - the norm, the positions, the MLP, the
attention's heads, biases and window, the tied head - is a field of
``GPTConfig`` whose default is GPT-2's."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .. import _dtypes, generation, nn
from .._tensor_data import values_view
from ..grad_mode import is_grad_enabled
from ..nn import functional as F
from ..nn import init
from ..ops import checks
from ..tensor import Tensor, arange
from ..utils.checkpoint import checkpoint
from .hf import loading as hf_loading

_NORMS = ("layernorm", "rmsnorm")
_POSITIONS = ("learned", "rope")
_MLPS = ("gelu_tanh", "gelu", "relu", "swiglu")


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest sequence: the size of the position table
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linears and LayerNorms, as GPT-2
    # The decoder's variants; the defaults are GPT-2's.
    n_kv_head: int | None = None  # key/value heads (None: n_head); fewer is grouped-query attention
    head_dim: int | None = None  # None: n_embd // n_head
    d_ff: int | None = None  # the feed-forward width (None: 4 * n_embd)
    mlp: str = "gelu_tanh"  # the feed-forward's activation: "gelu_tanh", "gelu", "relu" or "swiglu"
    norm: str = "layernorm"  # or "rmsnorm"
    norm_eps: float = 1e-5
    position: str = "learned"  # "learned" (a table of block_size positions) or "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # Hugging Face's rope_scaling dict: "linear" or "llama3" (F.rope_frequencies)
    rope_interleaved: bool = False  # rope's pairs: (2i, 2i+1) if True, else (i, i + head_dim/2) as Hugging Face's
    sliding_window: int | None = None  # each query sees this many positions at most (itself included)
    sliding_window_layers: list | None = None  # the blocks with the window (None: every block)
    # a sparse attention pattern for every block: MultiHeadAttention's pattern, a dict of
    # dilation, global_tokens (positions), block_mask (nested lists of bools) and block_size
    attention_pattern: dict | None = None
    qkv_bias: bool | None = None  # biases of the q, k, v projections (None: bias)
    out_bias: bool | None = None  # bias of the attention's output projection (None: bias)
    mlp_bias: bool | None = None  # biases of the feed-forward (None: bias)
    tie_embeddings: bool = True  # the LM head is the token embedding (else a Linear of its own, lm_head)
    # Training: keep only each block's input and run the block again in
    # backward (attnkit.utils.checkpoint); the same gradients, bit for bit.
    gradient_checkpointing: bool = False
    # A mixture of experts in place of the blocks' feed-forward (nn.MoEFeedForward).
    n_experts: int | None = None  # None: the dense feed-forward
    top_k: int = 2  # experts per token
    capacity_factor: float | None = None  # None: no token dropped
    moe_renormalize: bool = True  # the top_k gates rescaled to sum 1 (Mixtral); False: the router's probabilities
    expert_d_ff: int | None = None  # each expert's width (None: d_ff)
    shared_expert_d_ff: int | None = None  # a sigmoid-gated expert every token runs (Qwen2-MoE); None: none
    moe_layers: list | None = None  # the blocks with experts (None: every block); the others are dense, d_ff wide
    moe_aux_loss_coef: float = 0.01  # the load-balancing loss's weight in GPT.aux_loss

    def resolved(self) -> GPTConfig:
        """The same model with every None default spelled out (two configs
        build the same model when their resolved forms are equal)."""
        bias = lambda value: self.bias if value is None else value  # noqa: E731
        d_ff = 4 * self.n_embd if self.d_ff is None else self.d_ff
        return dataclasses.replace(
            self,
            n_kv_head=self.n_head if self.n_kv_head is None else self.n_kv_head,
            head_dim=self.n_embd // self.n_head if self.head_dim is None else self.head_dim,
            d_ff=d_ff,
            expert_d_ff=d_ff if self.expert_d_ff is None else self.expert_d_ff,
            qkv_bias=bias(self.qkv_bias),
            out_bias=bias(self.out_bias),
            mlp_bias=bias(self.mlp_bias),
            moe_layers=None
            if self.n_experts is None
            else sorted(set(range(self.n_layer) if self.moe_layers is None else self.moe_layers)),
        )

    @classmethod
    def gpt2(cls) -> GPTConfig:
        """GPT-2 small: 124,439,808 parameters with the tied head."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)


def _check_config(config: GPTConfig) -> None:
    """Refuses a config whose variant fields name nothing this decoder has
    (the sizes are checked by the modules that use them)."""
    name = type(config).__name__
    if not isinstance(config.n_layer, int) or isinstance(config.n_layer, bool) or config.n_layer < 1:
        raise ValueError(f"{name}: field 'n_layer' expected an int >= 1, got {config.n_layer!r}")
    for field, value, allowed in (
        ("norm", config.norm, _NORMS),
        ("position", config.position, _POSITIONS),
        ("mlp", config.mlp, _MLPS),
    ):
        if value not in allowed:
            raise ValueError(f"{name}: field '{field}' expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    if config.n_experts is None:
        for field in ("expert_d_ff", "shared_expert_d_ff", "moe_layers"):
            if getattr(config, field) is not None:
                raise ValueError(f"{name}: field '{field}' is set but n_experts is None")
    else:
        if not isinstance(config.n_experts, int) or isinstance(config.n_experts, bool) or config.n_experts < 1:
            raise ValueError(f"{name}: field 'n_experts' expected None or an int >= 1, got {config.n_experts!r}")
        if (
            not isinstance(config.top_k, int)
            or isinstance(config.top_k, bool)
            or not 1 <= config.top_k <= config.n_experts
        ):
            raise ValueError(
                f"{name}: field 'top_k' expected an int in [1, n_experts={config.n_experts}], got {config.top_k!r}"
            )
        if not isinstance(config.moe_aux_loss_coef, (int, float)) or not config.moe_aux_loss_coef >= 0:
            raise ValueError(
                f"{name}: field 'moe_aux_loss_coef' expected a number >= 0, got {config.moe_aux_loss_coef!r}"
            )
        if config.moe_layers is not None:
            bad = [
                i
                for i in config.moe_layers
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < config.n_layer
            ]
            if bad:
                raise ValueError(
                    f"{name}: field 'moe_layers' expected block indices in [0, {config.n_layer}), got {bad[0]!r}"
                )
        if config.gradient_checkpointing:
            # The checkpoint's first run is without grad: the blocks' load-balancing losses would carry none.
            raise ValueError(f"{name}: fields 'gradient_checkpointing' and 'n_experts' do not work together yet")
    if config.position != "rope" and config.rope_scaling is not None:
        raise ValueError(f"{name}: field 'rope_scaling' is set but position is {config.position!r}, not 'rope'")
    if config.sliding_window_layers is not None:
        layers = list(config.sliding_window_layers)
        if config.sliding_window is None:
            raise ValueError(f"{name}: field 'sliding_window_layers' is set but sliding_window is None")
        bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < config.n_layer]
        if bad:
            raise ValueError(
                f"{name}: field 'sliding_window_layers' expected block indices in [0, {config.n_layer}), got {bad[0]!r}"
            )


def _check_pattern(config: GPTConfig) -> None:
    """The attention pattern's positions against block_size (the rest is
    MultiHeadAttention's to check)."""
    name, pattern = type(config).__name__, config.attention_pattern or {}
    if not isinstance(pattern, dict):
        raise TypeError(f"{name}: field 'attention_pattern' expected a dict, got {type(pattern).__name__}")
    tokens = np.asarray(pattern.get("global_tokens") or [], np.int64)
    if tokens.size and not (tokens < config.block_size).all():
        raise ValueError(
            f"{name}: field 'attention_pattern' expected global tokens in [0, block_size = {config.block_size}), "
            f"got {tokens.max()}"
        )
    if (
        pattern.get("block_mask") is not None
        and isinstance(pattern.get("block_size"), int)
        and pattern["block_size"] > 0
    ):
        blocks = -(-config.block_size // pattern["block_size"])
        shape = np.shape(pattern["block_mask"])
        if len(shape) != 2 or min(shape) < blocks:
            raise ValueError(
                f"{name}: field 'attention_pattern' expected a block_mask of at least {blocks} x {blocks} blocks "
                f"(block_size {config.block_size}), got shape {list(shape)}"
            )


class GPT(nn.Module):
    """``logits = model(idx)``: idx int32/int64 [B, T] with T <= block_size
    and ids < vocab_size; logits float32 [B, T, vocab_size]. For generation,
    ``model(idx, caches=model.make_caches(B))`` (under ``no_grad``) feeds
    the prompt, then one token at a time, each step reusing the cached keys.

    Layout: ``wte`` (token embedding, also the LM head unless
    ``tie_embeddings`` is False, which adds ``lm_head``), ``wpe`` (learned
    positions; absent with rope), ``blocks`` of pre-norm
    ``TransformerEncoderLayer`` run causally, ``ln_f``. Initialization is
    GPT-2's: every Linear weight and both embeddings N(0, 0.02), biases 0,
    norms 1 and 0, and the projections that write into the residual stream
    (attention out_proj, MLP fc2) N(0, 0.02 / sqrt(2 n_layer)), so the
    residual stream's variance does not grow with depth (GPT-2 paper,
    section 2.3).

    With ``n_experts`` set, every block's feed-forward (or those of
    ``moe_layers``) is a mixture of experts (``nn.MoEFeedForward``, ``top_k``
    experts per token, optionally a shared expert), and each
    forward sets ``aux_loss``: the blocks' load-balancing losses, averaged,
    times ``moe_aux_loss_coef``, for the training loop to add to its loss
    (None for the dense model).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: argument 'config' expected a GPTConfig, got {type(config).__name__}")
        _check_config(config)
        _check_pattern(config)
        self.config = config
        width = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, width)
        if config.position == "learned":
            self.wpe = nn.Embedding(config.block_size, width)
        self.drop = nn.Dropout(config.dropout)
        windowed = set(range(config.n_layer) if config.sliding_window_layers is None else config.sliding_window_layers)
        sparse = set()
        if config.n_experts is not None:
            sparse = set(range(config.n_layer) if config.moe_layers is None else config.moe_layers)
        dense_width = 4 * width if config.d_ff is None else config.d_ff
        expert_width = dense_width if config.expert_d_ff is None else config.expert_d_ff
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                config.n_head,
                dim_feedforward=expert_width if index in sparse else dense_width,
                dropout=config.dropout,
                activation=config.mlp,
                norm_first=True,
                bias=config.bias,
                layer_norm_eps=config.norm_eps,
                num_kv_heads=config.n_kv_head,
                rope=config.position == "rope",
                norm=config.norm,
                head_dim=config.head_dim,
                rope_base=config.rope_theta,
                rope_scaling=config.rope_scaling,
                rope_interleaved=config.rope_interleaved,
                window=config.sliding_window if index in windowed else None,
                pattern=config.attention_pattern,
                qkv_bias=config.qkv_bias,
                out_bias=config.out_bias,
                mlp_bias=config.mlp_bias,
                n_experts=config.n_experts if index in sparse else None,
                top_k=config.top_k,
                capacity_factor=config.capacity_factor,
                moe_renormalize=config.moe_renormalize,
                shared_expert_d_ff=config.shared_expert_d_ff,
            )
            for index in range(config.n_layer)
        )
        self.ln_f = (
            nn.LayerNorm(width, eps=config.norm_eps, bias=config.bias)
            if config.norm == "layernorm"
            else nn.RMSNorm(width, eps=config.norm_eps)
        )
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(width, config.vocab_size, bias=False)
        self.aux_loss: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        init.normal_(self.wte.weight, 0.0, 0.02)
        if self.config.position == "learned":
            init.normal_(self.wpe.weight, 0.0, 0.02)
        if not self.config.tie_embeddings:
            init.normal_(self.lm_head.weight, 0.0, 0.02)
        for block in self.blocks:
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    writes_residual = name in (
                        "self_attn.out_proj",
                        "feed_forward.fc2",
                        "feed_forward.shared_expert.fc2",
                    )
                    init.normal_(module.weight, 0.0, residual_std if writes_residual else 0.02)
                    if module.bias is not None:
                        init.zeros_(module.bias)
                elif isinstance(module, nn.MoEFeedForward):  # its experts as the dense fc1 and fc2
                    init.normal_(module.fc1_weight, 0.0, 0.02)
                    init.normal_(module.fc2_weight, 0.0, residual_std)
                    for bias in (module.fc1_bias, module.fc2_bias):
                        if bias is not None:
                            init.zeros_(bias)

    def num_parameters(self) -> int:
        """The number of trainable numbers; the tied head counts once."""
        return sum(parameter.numel() for parameter in self.parameters())

    def make_caches(self, batch: int, max_len: int | None = None) -> list:
        """One KVCache per block for decoding up to ``max_len`` positions
        (default block_size): pass them as ``model(idx, caches=caches)``."""
        return [
            block.self_attn.make_cache(batch, self.config.block_size if max_len is None else max_len)
            for block in self.blocks
        ]

    def forward(
        self,
        idx: Tensor,
        caches: list | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Logits float32 [B, T, vocab_size] for idx [B, T].

        - ``caches``: one KVCache per block (``make_caches``); idx continues
          the cached sequence.
        - ``key_padding_mask``: bool [B, T], True marks padding tokens (left
          padding of prompts of different lengths): no position attends to
          them, and with caches they stay hidden in later steps.
        - ``position_ids``: int [B, T], the position of every token in its
          row (< block_size), for the learned table or for rope. Default: 0, 1, ... continuing after the cached
          positions, the same for every row; a left-padded row needs its own
          (its first real token is position 0).
        - ``last_only``: compute the logits of the last position only, [B, 1,
          vocab_size] (what decoding needs; the LM head is the largest GEMM).
        """
        steps = self._check_forward_inputs(idx, caches, key_padding_mask, position_ids)
        learned = self.config.position == "learned"
        x = self.wte(idx)
        if learned:
            if position_ids is None:  # after the cached positions, if any
                start = 0 if caches is None else caches[0].length
                x = x + self.wpe(arange(start, start + steps, dtype=_dtypes.int64))
            else:
                x = x + self.wpe(position_ids)
        x = self.drop(x)
        rope_positions = None if learned else position_ids
        for index, block in enumerate(self.blocks):
            if self.config.gradient_checkpointing and caches is None and is_grad_enabled():
                x = checkpoint(block, x, key_padding_mask=key_padding_mask, causal=True, positions=rope_positions)
                continue
            cache = None if caches is None else caches[index]
            x = block(x, key_padding_mask=key_padding_mask, causal=True, cache=cache, positions=rope_positions)
        losses = [
            block.feed_forward.aux_loss for block in self.blocks if isinstance(block.feed_forward, nn.MoEFeedForward)
        ]
        if losses:
            self.aux_loss = sum(losses[1:], losses[0]) * (self.config.moe_aux_loss_coef / len(losses))
        if last_only and steps > 1:
            x = F.narrow(x, 1, steps - 1, 1)
        if "lm_head" in self._modules:  # untied, or an int8 copy of the tied head (attnkit.quantize)
            return self.lm_head(self.ln_f(x))
        return F.linear(self.ln_f(x), self.wte.weight)

    def _check_forward_inputs(self, idx, caches, key_padding_mask, position_ids) -> int:
        """forward's arguments (token ids >= vocab_size are the embedding
        kernel's to refuse); returns the number of steps, T."""
        op, int_ids = "GPT", (_dtypes.int32, _dtypes.int64)
        checks.check_tensor_of(op, "idx", idx, int_ids, "int32 or int64 token ids of shape [batch, seq]", ndim=2)
        batch, steps = idx.shape
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(
                f"{op}: argument 'caches' expected {len(self.blocks)} KVCaches (make_caches), got {len(caches)}"
            )
        if key_padding_mask is not None:
            expected = f"bool of shape [{batch}, {steps}] (that of idx)"
            checks.check_tensor_of(
                op, "key_padding_mask", key_padding_mask, (_dtypes.bool_,), expected, shape=[batch, steps]
            )
        block_size = self.config.block_size
        if position_ids is None:
            end = steps if caches is None else caches[0].length + steps
            if end > block_size:
                raise ValueError(f"{op}: argument 'idx' reaches position {end}, more than block_size={block_size}")
            return steps
        expected = f"int32 or int64 of shape [{batch}, {steps}] (that of idx)"
        checks.check_tensor_of(op, "position_ids", position_ids, int_ids, expected, shape=[batch, steps])
        values = values_view(position_ids)
        if values.size and (values.min() < 0 or values.max() >= block_size):
            bad = values.min() if values.min() < 0 else values.max()
            raise ValueError(
                f"{op}: argument 'position_ids' expected positions in [0, {block_size}) (block_size), got {bad}"
            )
        return steps

    def generate(self, idx, max_new_tokens: int, **options):
        """Continues each prompt by up to ``max_new_tokens`` tokens with the KV
        cache; the keyword options (temperature, top_k, top_p,
        repetition_penalty, stop_tokens, stop_strings with tokenizer,
        generator) are those of ``attnkit.generation.generate``.

        ``idx``: an int Tensor [B, T] (every row a prompt of T tokens), or a
        list of 1-D token sequences of different lengths (left-padded
        internally; padding is never attended). Returns for a Tensor an int64
        Tensor [B, T + n]: the prompts followed by n <= max_new_tokens new
        tokens (fewer when every row stopped; a row that stopped earlier
        holds -1 after its stop token); for a list, a list of lists of ints:
        each prompt followed by its new tokens, up to and including the stop
        token that ended it.
        """
        return generation.generate(self, idx, max_new_tokens, **options)

    def stream(self, idx, max_new_tokens: int, **options):
        """The arguments of ``generate``; an iterator that yields, per decoding
        step, a numpy int64 array [B] of the new tokens (-1 for a row that
        has already stopped), as soon as they are drawn."""
        return generation.stream(self, idx, max_new_tokens, **options)

    def save_pretrained(self, path, *, tokenizer=None, max_shard_size="5GB") -> None:
        """Writes a Hugging Face checkpoint directory that ``transformers``
        loads: a GPT2LMHeadModel for GPT-2's layout, a LlamaForCausalLM,
        MistralForCausalLM or Qwen2ForCausalLM for the Llama family's,
        MixtralForCausalLM or Qwen2MoeForCausalLM with experts; with
        ``tokenizer`` (attnkit's own or a pretrained one) as tokenizer.json (see
        ``attnkit.models.hf.save_pretrained``)."""
        hf_loading.save_pretrained(self, path, tokenizer=tokenizer, max_shard_size=max_shard_size)

    def extra_repr(self) -> str:
        return f"{self.config}"


__all__ = ["GPTConfig", "GPT"]
