"""The Transformer blocks of "Attention Is All You Need" (Vaswani et al., 2017,
section 3.1): the position-wise feed-forward network, the encoder and decoder
layers, and their stacks.

``norm_first=False`` is the paper's post-LN layer, ``LayerNorm(x +
Sublayer(x))``; ``norm_first=True`` is pre-LN, ``x + Sublayer(LayerNorm(x))``
(GPT-2, and most models since, as it trains without warmup tricks). A pre-LN
stack ends with a final LayerNorm, since its residual stream is never
normalized otherwise.
"""

from __future__ import annotations

from ..grad_mode import is_grad_enabled
from ..ops import checks
from ..tensor import Tensor
from ..utils.checkpoint import checkpoint
from . import functional as F
from .attention import KVCache, MultiHeadAttention
from .container import ModuleList
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .moe import MoEFeedForward
from .norm import LayerNorm, RMSNorm

# activation name -> the activation fused into the first Linear
_FUSED_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}


class FeedForward(Module):
    """``fc2(dropout(activation(fc1(x))))``, section 3.3 of the paper.

    ``activation``: "relu" (the paper's), "gelu" (erf, as BERT), "gelu_tanh"
    (GPT-2) - each fused into fc1's kernel -, "silu" (swish, as Marian's
    OPUS-MT models; applied after fc1) or "swiglu" (Shazeer, 2020: fc1
    projects to 2 * d_ff, the gate then the up projection, and ``F.swiglu``
    gives silu(gate) * up).
    """

    def __init__(
        self, d_model: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        self.d_model = checks.positive_int("FeedForward", "d_model", d_model)
        self.d_ff = checks.positive_int("FeedForward", "d_ff", d_ff)
        if activation not in (*_FUSED_ACTIVATIONS, "silu", "swiglu"):
            raise ValueError(
                f"FeedForward: argument 'activation' expected 'relu', 'gelu', 'gelu_tanh', 'silu' or "
                f"'swiglu', got {activation!r}"
            )
        self.activation = activation
        if activation == "swiglu":
            self.fc1 = Linear(self.d_model, 2 * self.d_ff, bias=bias)
        else:
            self.fc1 = Linear(self.d_model, self.d_ff, bias=bias, activation=_FUSED_ACTIVATIONS.get(activation))
        self.fc2 = Linear(self.d_ff, self.d_model, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1(x)
        if self.activation == "swiglu":
            hidden = F.swiglu(hidden)
        elif self.activation == "silu":
            hidden = F.silu(hidden)
        return self.fc2(self.dropout(hidden))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_ff={self.d_ff}, activation={self.activation!r}"


class TransformerEncoderLayer(Module):
    """Self-attention then feed-forward, each with a residual connection,
    dropout on the sublayer output (section 5.4) and a norm, placed after
    the residual add (``norm_first=False``, the paper) or before the
    sublayer (``norm_first=True``).

    ``forward(x, key_padding_mask=None, causal=False, cache=None,
    positions=None)``: x [B, T, d_model]; ``key_padding_mask`` bool [B, T],
    True marks padding; ``cache`` a KVCache for the self-attention when
    decoding step by step (decoder-only models such as GPT; under
    ``no_grad``); ``positions`` int [B, T], the rope positions of the rows.

    The variants decoder-only models differ by (GPT-2's are the defaults,
    the Llama family sets the others):

    - ``norm``: "layernorm" or "rmsnorm", each with ``layer_norm_eps``;
    - ``activation``: the FeedForward's, "swiglu" included;
    - ``num_kv_heads``, ``head_dim``: grouped-query attention, a head size
      other than d_model / nhead;
    - ``rope`` with ``rope_base``, ``rope_scaling``, ``rope_interleaved``;
      ``window``: a sliding attention window, ``pattern`` a sparse one
      (see MultiHeadAttention);
    - ``bias`` for every Linear and LayerNorm, overridden by ``qkv_bias``
      and ``out_bias`` for the attention's projections and by ``mlp_bias``
      for the FeedForward's;
    - ``n_experts``: a mixture of experts (``MoEFeedForward`` with ``top_k``
      and ``capacity_factor``) in place of the FeedForward, each expert of
      width dim_feedforward; ``moe_renormalize`` is its ``renormalize``, and
      ``shared_expert_d_ff`` gives it a shared expert, a FeedForward of
      that width.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
        rope: bool = False,
        *,
        norm: str = "layernorm",
        head_dim: int | None = None,
        rope_base: float = 10000.0,
        rope_scaling: dict | None = None,
        rope_interleaved: bool = True,
        window: int | None = None,
        pattern: dict | None = None,
        qkv_bias: bool | None = None,
        out_bias: bool | None = None,
        mlp_bias: bool | None = None,
        n_experts: int | None = None,
        top_k: int = 2,
        capacity_factor: float | None = None,
        moe_renormalize: bool = True,
        shared_expert_d_ff: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = checks.flag("TransformerEncoderLayer", "norm_first", norm_first)
        self.self_attn = MultiHeadAttention(
            d_model,
            nhead,
            num_kv_heads,
            bias=bias,
            dropout=dropout,
            rope=rope,
            rope_base=rope_base,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            out_bias=out_bias,
            rope_scaling=rope_scaling,
            rope_interleaved=rope_interleaved,
            window=window,
            pattern=pattern,
        )
        if n_experts is None:
            self.feed_forward = FeedForward(
                d_model, dim_feedforward, activation, dropout, bias if mlp_bias is None else mlp_bias
            )
        else:
            self.feed_forward = MoEFeedForward(
                d_model,
                n_experts,
                top_k,
                dim_feedforward,
                activation,
                bias=bias if mlp_bias is None else mlp_bias,
                capacity_factor=capacity_factor,
                renormalize=moe_renormalize,
                shared_expert=None
                if shared_expert_d_ff is None
                else FeedForward(
                    d_model, shared_expert_d_ff, activation, dropout, bias if mlp_bias is None else mlp_bias
                ),
            )
        self.norm1 = _norm("TransformerEncoderLayer", norm, d_model, layer_norm_eps, bias)
        self.norm2 = _norm("TransformerEncoderLayer", norm, d_model, layer_norm_eps, bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        def self_attention(h):
            return self.dropout1(
                self.self_attn(h, causal=causal, key_padding_mask=key_padding_mask, cache=cache, positions=positions)
            )

        if self.norm_first:
            # each residual add and the next sublayer's norm in one pass
            x, normed = self.norm2.add_forward(x, self_attention(self.norm1(x)))
            return x + self.dropout2(self.feed_forward(normed))
        x = self.norm1(x + self_attention(x))
        return self.norm2(x + self.dropout2(self.feed_forward(x)))

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


class TransformerDecoderLayer(Module):
    """Causal self-attention, cross-attention to the encoder output
    (``memory``), then feed-forward; residuals and LayerNorms as in
    TransformerEncoderLayer.

    ``forward(x, memory, key_padding_mask=None, memory_key_padding_mask=None,
    causal=True, cache=None)``: x [B, T, d_model], memory [B, S, d_model];
    the masks are bool [B, T] and [B, S]; ``cache`` a KVCache for the
    self-attention when decoding step by step (under ``no_grad``).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = checks.flag("TransformerDecoderLayer", "norm_first", norm_first)
        self.self_attn = MultiHeadAttention(d_model, nhead, num_kv_heads, bias=bias, dropout=dropout)
        # Queries and keys come from different sequences: separate projections.
        self.cross_attn = MultiHeadAttention(d_model, nhead, num_kv_heads, bias=bias, dropout=dropout, qkv_fused=False)
        self.feed_forward = FeedForward(d_model, dim_feedforward, activation, dropout, bias)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
    ) -> Tensor:
        def self_attention(h):
            return self.dropout1(self.self_attn(h, causal=causal, key_padding_mask=key_padding_mask, cache=cache))

        def cross_attention(h):
            return self.dropout2(self.cross_attn(h, key_value=memory, key_padding_mask=memory_key_padding_mask))

        if self.norm_first:
            # each residual add and the next sublayer's norm in one pass
            x, normed = self.norm2.add_forward(x, self_attention(self.norm1(x)))
            x, normed = self.norm3.add_forward(x, cross_attention(normed))
            return x + self.dropout3(self.feed_forward(normed))
        x = self.norm1(x + self_attention(x))
        x = self.norm2(x + cross_attention(x))
        return self.norm3(x + self.dropout3(self.feed_forward(x)))

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


_NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def _norm(op: str, kind: str, d_model: int, eps: float, bias: bool) -> Module:
    """The block's norm: a LayerNorm (with a bias when ``bias``) or an RMSNorm."""
    if kind not in _NORMS:
        raise ValueError(f"{op}: argument 'norm' expected 'layernorm' or 'rmsnorm', got {kind!r}")
    return LayerNorm(d_model, eps=eps, bias=bias) if kind == "layernorm" else RMSNorm(d_model, eps=eps)


def _final_norm(norm: bool | None, norm_first: bool, d_model: int, eps: float, bias: bool):
    wanted = norm_first if norm is None else checks.flag("Transformer stack", "norm", norm)
    return LayerNorm(d_model, eps=eps, bias=bias) if wanted else None


class _TransformerStack(Module):
    """``num_layers`` layers of ``layer_class`` (same arguments), then a final
    LayerNorm when ``norm`` is True (default: with pre-LN layers only): what
    TransformerEncoder and TransformerDecoder share. ``gradient_checkpointing``:
    in a forward with grad, each layer keeps only its inputs and runs again in
    backward (``attnkit.utils.checkpoint``: the same gradients, for one more
    forward's time); never with caches."""

    layer_class = None

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        norm: bool | None = None,
        gradient_checkpointing: bool = False,
        **layer_options,
    ) -> None:
        super().__init__()
        count = checks.positive_int(type(self).__name__, "num_layers", num_layers)
        self.gradient_checkpointing = checks.flag(type(self).__name__, "gradient_checkpointing", gradient_checkpointing)
        self.layers = ModuleList(
            self.layer_class(
                d_model, nhead, dim_feedforward, dropout, activation, norm_first, bias, layer_norm_eps, **layer_options
            )
            for _ in range(count)
        )
        final = _final_norm(norm, norm_first, d_model, layer_norm_eps, bias)
        if final is None:
            self.add_module("norm", None)
        else:
            self.norm = final


class TransformerEncoder(_TransformerStack):
    """``num_layers`` TransformerEncoderLayers (same arguments), then a final
    LayerNorm when ``norm`` is True (default: with pre-LN layers only)."""

    layer_class = TransformerEncoderLayer

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and is_grad_enabled():
                x = checkpoint(layer, x, key_padding_mask=key_padding_mask, causal=causal)
            else:
                x = layer(x, key_padding_mask=key_padding_mask, causal=causal)
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(_TransformerStack):
    """``num_layers`` TransformerDecoderLayers (same arguments), then a final
    LayerNorm when ``norm`` is True (default: with pre-LN layers only).
    ``caches``, when given, is one KVCache per layer."""

    layer_class = TransformerDecoderLayer

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        causal: bool = True,
        caches: list | None = None,
    ) -> Tensor:
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(
                f"TransformerDecoder: argument 'caches' expected {len(self.layers)} KVCaches, got {len(caches)}"
            )
        for index, layer in enumerate(self.layers):
            if self.gradient_checkpointing and caches is None and is_grad_enabled():
                x = checkpoint(
                    layer,
                    x,
                    memory,
                    key_padding_mask=key_padding_mask,
                    memory_key_padding_mask=memory_key_padding_mask,
                    causal=causal,
                )
                continue
            x = layer(
                x,
                memory,
                key_padding_mask=key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                causal=causal,
                cache=None if caches is None else caches[index],
            )
        return x if self.norm is None else self.norm(x)

    def make_caches(self, batch: int, max_len: int) -> list:
        """One KVCache per layer, for step-by-step decoding."""
        return [layer.self_attn.make_cache(batch, max_len) for layer in self.layers]


__all__ = [
    "FeedForward",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerDecoder",
]
