"""GPT-2 (Radford et al., 2019): a decoder-only Transformer with learned
positions, pre-LN blocks, tanh-GELU feed-forward and an LM head tied to the
token embedding. Config names follow nanoGPT, so its configs carry over."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _dtypes, generation, nn
from ..autograd import is_grad_enabled
from ..nn import functional as F
from ..nn import init
from ..tensor import Tensor, arange
from ..utils.checkpoint import checkpoint


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest sequence: the size of the position table
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in the Linears and LayerNorms, as GPT-2
    # Training: keep only each block's input and run the block again in
    # backward (attnkit.utils.checkpoint); the same gradients, bit for bit.
    gradient_checkpointing: bool = False

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
            nn.TransformerEncoderLayer(
                width,
                config.n_head,
                dim_feedforward=4 * width,
                dropout=config.dropout,
                activation="gelu_tanh",
                norm_first=True,
                bias=config.bias,
            )
            for _ in range(config.n_layer)
        )
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
          row (< block_size). Default: 0, 1, ... continuing after the cached
          positions, the same for every row; a left-padded row needs its own
          (its first real token is position 0).
        - ``last_only``: compute the logits of the last position only, [B, 1,
          vocab_size] (what decoding needs; the LM head is the largest GEMM).
        """
        if not isinstance(idx, Tensor):
            raise TypeError(f"GPT: argument 'idx' expected an attnkit.Tensor, got {type(idx).__name__}")
        if idx.dtype not in (_dtypes.int32, _dtypes.int64) or idx.ndim != 2:
            raise ValueError(
                f"GPT: argument 'idx' expected int32 or int64 token ids of shape [batch, seq], "
                f"got {idx.dtype} of shape {list(idx.shape)}"
            )
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(
                f"GPT: argument 'caches' expected {len(self.blocks)} KVCaches (make_caches), got {len(caches)}"
            )
        batch, steps = idx.shape
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor):
                raise TypeError(
                    f"GPT: argument 'key_padding_mask' expected an attnkit.Tensor, "
                    f"got {type(key_padding_mask).__name__}"
                )
            if key_padding_mask.dtype != _dtypes.bool_ or list(key_padding_mask.shape) != [batch, steps]:
                raise ValueError(
                    f"GPT: argument 'key_padding_mask' expected bool of shape [{batch}, {steps}] "
                    f"(that of idx), got {key_padding_mask.dtype} of shape "
                    f"{list(key_padding_mask.shape)}"
                )
        if position_ids is None:
            # With caches, idx continues the cached sequence: its positions
            # start after the cached ones.
            start = 0 if caches is None else caches[0].length
            if start + steps > self.config.block_size:
                raise ValueError(
                    f"GPT: argument 'idx' reaches position {start + steps}, more than block_size="
                    f"{self.config.block_size}"
                )
            positions = self.wpe(arange(start, start + steps, dtype=_dtypes.int64))
        else:
            if not isinstance(position_ids, Tensor):
                raise TypeError(
                    f"GPT: argument 'position_ids' expected an attnkit.Tensor, got {type(position_ids).__name__}"
                )
            if position_ids.dtype not in (_dtypes.int32, _dtypes.int64) or list(position_ids.shape) != [batch, steps]:
                raise ValueError(
                    f"GPT: argument 'position_ids' expected int32 or int64 of shape [{batch}, {steps}] "
                    f"(that of idx), got {position_ids.dtype} of shape {list(position_ids.shape)}"
                )
            values = np.asarray(position_ids._array)
            if values.size and (values.min() < 0 or values.max() >= self.config.block_size):
                bad = values.min() if values.min() < 0 else values.max()
                raise ValueError(
                    f"GPT: argument 'position_ids' expected positions in [0, "
                    f"{self.config.block_size}) (block_size), got {bad}"
                )
            positions = self.wpe(position_ids)
        # Token ids >= vocab_size are caught by the embedding kernel (ValueError naming the id).
        x = self.drop(self.wte(idx) + positions)
        for index, block in enumerate(self.blocks):
            if self.config.gradient_checkpointing and caches is None and is_grad_enabled():
                x = checkpoint(block, x, key_padding_mask=key_padding_mask, causal=True)
                continue
            x = block(
                x, key_padding_mask=key_padding_mask, causal=True, cache=None if caches is None else caches[index]
            )
        if last_only and steps > 1:
            x = F.narrow(x, 1, steps - 1, 1)
        return F.linear(self.ln_f(x), self.wte.weight)

    def generate(
        self,
        idx,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        stop_tokens=None,
        generator=None,
    ):
        """Continues each prompt by up to ``max_new_tokens`` tokens with the KV
        cache (see ``attnkit.generation.generate`` for every argument).

        ``idx``: an int Tensor [B, T] (every row a prompt of T tokens), or a
        list of 1-D token sequences of different lengths (left-padded
        internally; padding is never attended). Returns for a Tensor an int64
        Tensor [B, T + n]: the prompts followed by n <= max_new_tokens new
        tokens (fewer when every row stopped; a row that stopped earlier
        holds -1 after its stop token); for a list, a list of lists of ints:
        each prompt followed by its new tokens, up to and including the stop
        token that ended it.
        """
        return generation.generate(
            self,
            idx,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            stop_tokens=stop_tokens,
            generator=generator,
        )

    def stream(
        self,
        idx,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        stop_tokens=None,
        generator=None,
    ):
        """The arguments of ``generate``; an iterator that yields, per decoding
        step, a numpy int64 array [B] of the new tokens (-1 for a row that
        has already stopped), as soon as they are drawn."""
        return generation.stream(
            self,
            idx,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            stop_tokens=stop_tokens,
            generator=generator,
        )

    def save_pretrained(self, path, *, tokenizer=None) -> None:
        """Writes a Hugging Face GPT2LMHeadModel checkpoint directory that
        ``transformers`` loads, with ``tokenizer`` (attnkit's own or a
        pretrained one) as tokenizer.json (see
        ``attnkit.models.hf.save_pretrained``)."""
        from .hf import save_pretrained

        save_pretrained(self, path, tokenizer=tokenizer)

    def extra_repr(self) -> str:
        return f"{self.config}"


__all__ = ["GPTConfig", "GPT"]
