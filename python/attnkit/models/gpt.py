"""GPT-2 (Radford et al., 2019): a decoder-only Transformer with learned
positions, pre-LN blocks, tanh-GELU feed-forward and an LM head tied to the
token embedding. Config names follow nanoGPT, so its configs carry over."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import _dtypes
from .. import nn
from ..nn import functional as F
from ..nn import init
from ..tensor import Tensor, arange


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest sequence: the size of the position table
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linears and LayerNorms, as GPT-2

    @classmethod
    def gpt2(cls) -> GPTConfig:
        """GPT-2 small: 124,439,808 parameters with the tied head."""
        return cls(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)


class GPT(nn.Module):
    """``logits = model(idx)``: idx int32/int64 [B, T] with T <= block_size
    and ids < vocab_size; logits float32 [B, T, vocab_size]. For generation,
    ``model(idx, caches=model.make_caches(B))`` (under ``no_grad``) feeds
    the prompt, then one token at a time, each step reusing the cached keys.

    Layout: ``wte`` (token embedding, also the LM head), ``wpe`` (learned
    positions), ``blocks`` of pre-LN ``TransformerEncoderLayer`` run
    causally, ``ln_f``. Initialization is GPT-2's: every Linear weight and
    both embeddings N(0, 0.02), biases 0, LayerNorms 1 and 0, and the
    projections that write into the residual stream (attention out_proj, MLP
    fc2) N(0, 0.02 / sqrt(2 n_layer)), so the residual stream's variance does
    not grow with depth (GPT-2 paper, section 2.3).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: argument 'config' expected a GPTConfig, got {type(config).__name__}")
        self.config = config
        width = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, width)
        self.wpe = nn.Embedding(config.block_size, width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, config.n_head, dim_feedforward=4 * width, dropout=config.dropout,
                                       activation="gelu_tanh", norm_first=True, bias=config.bias)
            for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(width, bias=config.bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        init.normal_(self.wte.weight, 0.0, 0.02)
        init.normal_(self.wpe.weight, 0.0, 0.02)
        for block in self.blocks:
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    writes_residual = name in ("self_attn.out_proj", "feed_forward.fc2")
                    init.normal_(module.weight, 0.0, residual_std if writes_residual else 0.02)
                    if module.bias is not None:
                        init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """The number of trainable numbers; the tied head counts once."""
        return sum(parameter.numel() for parameter in self.parameters())

    def make_caches(self, batch: int, max_len: int | None = None) -> list:
        """One KVCache per block for decoding up to ``max_len`` positions
        (default block_size): pass them as ``model(idx, caches=caches)``."""
        return [block.self_attn.make_cache(batch, self.config.block_size if max_len is None else max_len)
                for block in self.blocks]

    def forward(self, idx: Tensor, caches: list | None = None) -> Tensor:
        if not isinstance(idx, Tensor):
            raise TypeError(f"GPT: argument 'idx' expected an attnkit.Tensor, got {type(idx).__name__}")
        if idx.dtype not in (_dtypes.int32, _dtypes.int64) or idx.ndim != 2:
            raise ValueError(f"GPT: argument 'idx' expected int32 or int64 token ids of shape [batch, seq], "
                             f"got {idx.dtype} of shape {list(idx.shape)}")
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"GPT: argument 'caches' expected {len(self.blocks)} KVCaches (make_caches), "
                             f"got {len(caches)}")
        # With caches, idx continues the cached sequence: its positions start
        # after the cached ones.
        start = 0 if caches is None else caches[0].length
        steps = idx.shape[1]
        if start + steps > self.config.block_size:
            raise ValueError(f"GPT: argument 'idx' reaches position {start + steps}, more than block_size="
                             f"{self.config.block_size}")
        # Token ids >= vocab_size are caught by the embedding kernel (ValueError naming the id).
        x = self.wte(idx) + self.wpe(arange(start, start + steps, dtype=_dtypes.int64))
        x = self.drop(x)
        for index, block in enumerate(self.blocks):
            x = block(x, causal=True, cache=None if caches is None else caches[index])
        return F.linear(self.ln_f(x), self.wte.weight)

    def extra_repr(self) -> str:
        return f"{self.config}"


__all__ = ["GPTConfig", "GPT"]
