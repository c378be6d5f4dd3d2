"""The mixture-of-experts feed-forward layer (Shazeer et al., 2017; the
Switch Transformer, Fedus et al., 2021; Mixtral, Jiang et al., 2024)."""

from __future__ import annotations

import math

from ..ops import checks
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional.moe import MOE_ACTIVATIONS, _check_capacity_factor
from .linear import Linear
from .module import Module
from .parameter import empty_parameter


class MoEFeedForward(Module):
    """``n_experts`` feed-forward networks and a router: each token runs
    through its ``top_k`` most probable experts, and their outputs are summed,
    weighted by the renormalized router probabilities (Mixtral's gating).

    Parameters: ``router`` (a Linear d_model -> n_experts, no bias),
    ``fc1_weight`` [n_experts, d_ff, d_model] ([n_experts, 2 d_ff, d_model]
    for "swiglu": the gate, then the up projection), ``fc2_weight``
    [n_experts, d_model, d_ff] and, with ``bias``, ``fc1_bias`` and
    ``fc2_bias``. ``activation``: "relu", "gelu", "gelu_tanh" or "swiglu".
    ``capacity_factor``: None (no token is dropped) or a number > 0 that
    caps each expert at ``ceil(capacity_factor * tokens * top_k /
    n_experts)`` slots (see ``F.moe_feed_forward``). ``renormalize=False``
    keeps the raw probabilities as the gates (the Switch Transformer's top-1,
    Qwen2-MoE's ``norm_topk_prob=False``).

    ``shared_expert``: None, or a Module [..., d_model] -> [..., d_model]
    (a ``FeedForward``) that every token runs through besides its routed
    experts, scaled by a learned sigmoid gate (Qwen2-MoE's shared expert):
    ``y = moe(x) + sigmoid(shared_expert_gate(x)) * shared_expert(x)``, with
    ``shared_expert_gate`` a Linear d_model -> 1 without bias, made here.

    ``forward(x)``: x [..., d_model] -> the same shape. Each call also sets
    ``aux_loss``, the Switch Transformer's load-balancing loss (1 when the
    router spreads the slots evenly), a scalar Tensor that a training loop
    adds to its loss with a small coefficient (GPT does it with
    ``moe_aux_loss_coef``). Initialization: each expert as a Linear
    (uniform in +-1/sqrt(fan_in)), the router likewise.
    """

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        top_k: int,
        d_ff: int,
        activation: str = "gelu",
        *,
        bias: bool = True,
        capacity_factor: float | None = None,
        renormalize: bool = True,
        shared_expert: Module | None = None,
    ) -> None:
        super().__init__()
        op = "MoEFeedForward"
        self.d_model = checks.positive_int(op, "d_model", d_model)
        self.n_experts = checks.positive_int(op, "n_experts", n_experts)
        self.top_k = checks.positive_int(op, "top_k", top_k)
        if self.top_k > self.n_experts:
            raise ValueError(f"{op}: argument 'top_k' expected an int in [1, n_experts={self.n_experts}], got {top_k}")
        self.d_ff = checks.positive_int(op, "d_ff", d_ff)
        if activation not in MOE_ACTIVATIONS:
            raise ValueError(
                f"{op}: argument 'activation' expected one of {', '.join(map(repr, MOE_ACTIVATIONS))}, "
                f"got {activation!r}"
            )
        self.activation = activation
        checks.flag(op, "bias", bias)
        _check_capacity_factor(op, capacity_factor)
        self.capacity_factor = None if capacity_factor is None else float(capacity_factor)
        self.renormalize = checks.flag(op, "renormalize", renormalize)
        fc1_width = 2 * self.d_ff if activation == "swiglu" else self.d_ff
        self.router = Linear(self.d_model, self.n_experts, bias=False)
        self.fc1_weight = empty_parameter((self.n_experts, fc1_width, self.d_model))
        self.fc2_weight = empty_parameter((self.n_experts, self.d_model, self.d_ff))
        if bias:
            self.fc1_bias = empty_parameter((self.n_experts, fc1_width))
            self.fc2_bias = empty_parameter((self.n_experts, self.d_model))
        else:
            self.register_parameter("fc1_bias", None)
            self.register_parameter("fc2_bias", None)
        if shared_expert is None:
            self.shared_expert = self.shared_expert_gate = None
        elif not isinstance(shared_expert, Module):
            raise TypeError(
                f"{op}: argument 'shared_expert' expected None or a Module, got {type(shared_expert).__name__}"
            )
        else:
            self.shared_expert = shared_expert
            self.shared_expert_gate = Linear(self.d_model, 1, bias=False)
        self.aux_loss: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.router.reset_parameters()
        for weight, bias, fan_in in (
            (self.fc1_weight, self.fc1_bias, self.d_model),
            (self.fc2_weight, self.fc2_bias, self.d_ff),
        ):
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(weight, -bound, bound)
            if bias is not None:
                init.uniform_(bias, -bound, bound)
        if self.shared_expert_gate is not None:  # the shared expert was initialized by whoever made it
            self.shared_expert_gate.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        y, self.aux_loss = F.moe_feed_forward(
            x,
            self.router.weight,
            self.fc1_weight,
            self.fc1_bias,
            self.fc2_weight,
            self.fc2_bias,
            top_k=self.top_k,
            activation=self.activation,
            capacity_factor=self.capacity_factor,
            renormalize=self.renormalize,
        )
        if self.shared_expert is not None:
            # sigmoid(z) = (1 + tanh(z / 2)) / 2: off by at most float32's epsilon / 2 in absolute
            # terms, below the rounding of the sum it scales a term of.
            gate = (F.tanh(self.shared_expert_gate(x) * 0.5) + 1.0) * 0.5
            y = y + gate * self.shared_expert(x)
        return y

    def extra_repr(self) -> str:
        text = (
            f"d_model={self.d_model}, n_experts={self.n_experts}, top_k={self.top_k}, d_ff={self.d_ff}, "
            f"activation={self.activation!r}"
        )
        if self.capacity_factor is not None:
            text += f", capacity_factor={self.capacity_factor}"
        if not self.renormalize:
            text += ", renormalize=False"
        return text
