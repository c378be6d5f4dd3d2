"""The Llama family (Touvron et al., 2023; Llama 2 and 3), Mistral and Qwen2:
decoder-only Transformers that differ from GPT-2 by configuration only, so
they are ``GPT`` with other defaults, not a second decoder:

- RMSNorm (eps 1e-6 or 1e-5) instead of LayerNorm, no biases;
- rotary positions (RoPE, theta ``rope_theta``, optionally Llama 3's
  ``rope_scaling``) instead of a learned table;
- a SwiGLU feed-forward of width ``d_ff`` (the "intermediate size");
- grouped-query attention, ``n_kv_head`` key/value heads;
- an LM head of its own (``tie_embeddings=False``) for most of them.

Mistral adds ``sliding_window``; Qwen2 adds biases to the q, k and v
projections (``qkv_bias=True``), and ties its small models' heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpt import GPT, GPTConfig


@dataclass
class LlamaConfig(GPTConfig):
    """``GPTConfig`` with the Llama family's defaults (those of Hugging
    Face's ``LlamaConfig``: the 7B model's sizes, a context of 2048). Every
    field keeps its GPTConfig meaning; ``block_size`` is the longest context
    (``max_position_embeddings``), ``d_ff`` the ``intermediate_size``."""

    vocab_size: int = 32000
    block_size: int = 2048
    n_layer: int = 32
    n_head: int = 32
    n_embd: int = 4096
    bias: bool = False
    n_kv_head: int | None = None
    d_ff: int | None = 11008
    mlp: str = "swiglu"
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    position: str = "rope"
    rope_theta: float = 10000.0
    tie_embeddings: bool = False

    @classmethod
    def qwen2_0_5b(cls) -> LlamaConfig:
        """The sizes of Qwen2-0.5B: 24 blocks of width 896, 14 query heads
        and 2 key/value heads of 64, SwiGLU 4864, q/k/v biases, rope theta
        10^6, a 151,936-token vocabulary and a tied head: 494,032,768
        parameters."""
        return cls(
            vocab_size=151936,
            block_size=32768,
            n_layer=24,
            n_head=14,
            n_embd=896,
            n_kv_head=2,
            d_ff=4864,
            rope_theta=1_000_000.0,
            qkv_bias=True,
            tie_embeddings=True,
        )


class Llama(GPT):
    """A Llama-family decoder: ``GPT`` built from a ``LlamaConfig`` (or any
    GPTConfig), with the same forward, ``make_caches``, ``generate`` and
    ``stream``. Parameter names are GPT's: ``wte``, ``blocks.N.norm1``
    (input norm), ``blocks.N.self_attn.qkv_proj`` (q, k and v rows fused),
    ``blocks.N.self_attn.out_proj``, ``blocks.N.norm2``,
    ``blocks.N.feed_forward.fc1`` (the gate rows, then the up rows),
    ``blocks.N.feed_forward.fc2`` (down), ``ln_f`` and, untied, ``lm_head``."""

    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__(LlamaConfig() if config is None else config)


__all__ = ["LlamaConfig", "Llama"]
