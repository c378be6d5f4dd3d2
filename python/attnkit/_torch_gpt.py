"""attnkit.models.GPT written in PyTorch: the peer of attnkit's training and
decoding benchmarks (``attnkit bench``, bench/bench_train_step.py and the
other bench scripts, which import it through bench/torch_gpt.py).

Imported only when torch is installed; attnkit itself never needs torch.

The layout, the parameter names and the initialization are attnkit's, so a
state dict copies across one to one (``copy_from_attnkit``) and both models
compute the same function:

    wte, wpe                      token and position embeddings (wte is also the LM head)
    drop                          dropout on the embeddings
    blocks.{i}.norm1              pre-LN before attention
    blocks.{i}.self_attn.qkv_proj fused projection, rows: queries, keys, values
    blocks.{i}.self_attn.out_proj
    blocks.{i}.norm2              pre-LN before the feed-forward
    blocks.{i}.feed_forward.fc1   then tanh-GELU
    blocks.{i}.feed_forward.fc2
    ln_f                          final LayerNorm; logits = ln_f(x) @ wte.weight^T

Attention is ``F.scaled_dot_product_attention``. For decoding, ``generate``
feeds the prompt once, then one token per step, with the keys and values of
every layer in caches allocated once for the whole generation (``KVCache``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tensor import tensor


@dataclass
class GPTConfig:
    """The fields of attnkit.models.GPTConfig (nanoGPT's names)."""

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True

    @classmethod
    def from_config(cls, config) -> GPTConfig:
        """From any object with the same fields (an attnkit GPTConfig)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


class KVCache:
    """Keys and values of one layer, [batch, heads, max_len, head_dim] (the
    layout SDPA reads), allocated once; ``length`` positions are filled."""

    def __init__(self, batch: int, max_len: int, heads: int, head_dim: int, dtype=torch.float32) -> None:
        self.k = torch.zeros(batch, heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros(batch, heads, max_len, head_dim, dtype=dtype)
        self.max_len = max_len
        self.length = 0

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple:
        """Writes [batch, heads, t, head_dim] after the cached positions and
        returns views of every filled position."""
        end = self.length + k_new.shape[2]
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} positions exceed max_len={self.max_len}")
        self.k[:, :, self.length : end] = k_new
        self.v[:, :, self.length : end] = v_new
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class MultiHeadAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.num_heads = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.dropout = config.dropout
        self.qkv_proj = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.out_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        batch, steps, width = x.shape
        # [B, T, 3, H, D] -> three [B, H, T, D]: the fused weight's rows are
        # queries, keys, values, each head a contiguous block of D rows (attnkit's layout).
        q, k, v = self.qkv_proj(x).view(batch, steps, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        causal = True
        if cache is not None:
            past = cache.length
            k, v = cache.update(k, v)
            # One new query sees every cached key: no mask needed. Several new
            # queries (the prompt) after cached ones would need an offset mask.
            if steps == 1:
                causal = False
            elif past > 0:
                raise ValueError("torch_gpt: feed the prompt in one call on an empty cache, then one token per step")
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, steps, width))


class FeedForward(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.fc2 = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate="tanh")))


class Block(nn.Module):
    """attnkit's TransformerEncoderLayer with norm_first=True, run causally."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.feed_forward = FeedForward(config)
        self.norm1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.norm2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.dropout1 = nn.Dropout(config.dropout)
        self.dropout2 = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.dropout1(self.self_attn(self.norm1(x), cache))
        return x + self.dropout2(self.feed_forward(self.norm2(x)))


class GPT(nn.Module):
    """``logits = model(idx)``: idx int64 [B, T]; logits [B, T, vocab_size]."""

    def __init__(self, config) -> None:
        super().__init__()
        config = config if isinstance(config, GPTConfig) else GPTConfig.from_config(config)
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization, as attnkit's GPT: N(0, 0.02), the residual
        projections N(0, 0.02 / sqrt(2 n_layer)), biases 0, LayerNorms 1 and 0."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        nn.init.normal_(self.wte.weight, 0.0, 0.02)
        nn.init.normal_(self.wpe.weight, 0.0, 0.02)
        for block in self.blocks:
            for name, module in block.named_modules():
                if isinstance(module, nn.Linear):
                    writes_residual = name in ("self_attn.out_proj", "feed_forward.fc2")
                    nn.init.normal_(module.weight, 0.0, residual_std if writes_residual else 0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def make_caches(self, batch: int, max_len: int | None = None) -> list:
        max_len = self.config.block_size if max_len is None else max_len
        head_dim = self.config.n_embd // self.config.n_head
        return [KVCache(batch, max_len, self.config.n_head, head_dim) for _ in self.blocks]

    def forward(self, idx: torch.Tensor, caches: list | None = None) -> torch.Tensor:
        start = 0 if caches is None else caches[0].length
        steps = idx.shape[1]
        if start + steps > self.config.block_size:
            raise ValueError(f"torch_gpt: position {start + steps} is beyond block_size={self.config.block_size}")
        positions = torch.arange(start, start + steps, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for index, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[index])
        return F.linear(self.ln_f(x), self.wte.weight)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        caches: list | None = None,
    ) -> torch.Tensor:
        """Feeds the prompt ``idx`` [B, T] once, then one token per step
        through the KV caches; returns [B, T + max_new_tokens]. temperature 0
        is greedy; otherwise samples softmax(logits / temperature), over the
        ``top_k`` largest when given. ``caches`` (from ``make_caches``, at
        least T + max_new_tokens long) may be passed in to reuse them across
        calls; they are reset here."""
        batch, prompt_len = idx.shape
        total = prompt_len + max_new_tokens
        if caches is None:
            caches = self.make_caches(batch, total)
        for cache in caches:
            cache.length = 0
        out = torch.empty(batch, total, dtype=torch.long)
        out[:, :prompt_len] = idx
        logits = self(idx, caches)[:, -1]
        for step in range(max_new_tokens):
            token = self._next_token(logits, temperature, top_k, generator)
            out[:, prompt_len + step] = token
            if step + 1 < max_new_tokens:
                logits = self(token.view(batch, 1), caches)[:, -1]
        return out

    @staticmethod
    def _next_token(logits, temperature, top_k, generator):
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None:
            threshold = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).view(-1)


def copy_from_attnkit(torch_model: GPT, attnkit_model) -> None:
    """Copies every parameter of an attnkit.models.GPT into ``torch_model``
    (same names, same shapes); raises KeyError on any name that does not match."""
    source = {name: param for name, param in attnkit_model.named_parameters()}
    target = dict(torch_model.named_parameters())
    if set(source) != set(target):
        raise KeyError(
            f"copy_from_attnkit: names differ: only in attnkit {sorted(set(source) - set(target))}, "
            f"only in torch {sorted(set(target) - set(source))}"
        )
    with torch.no_grad():
        for name, param in target.items():
            param.copy_(torch.from_numpy(source[name].detach().numpy().copy()))


def copy_to_attnkit(attnkit_model, torch_model: GPT) -> None:
    """The reverse: copies ``torch_model``'s parameters into an attnkit GPT."""
    state = {name: tensor(param.detach().numpy().copy()) for name, param in torch_model.named_parameters()}
    attnkit_model.load_state_dict(state)


__all__ = ["GPTConfig", "KVCache", "GPT", "copy_from_attnkit", "copy_to_attnkit"]
