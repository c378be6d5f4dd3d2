"""Mixture of experts: a router picks each token's top-k experts, and each
expert's feed-forward network runs as one GEMM over the tokens sent to it.

The routing and the expert FFNs are native (``csrc/ops/moe.cpp``): the tokens
are grouped by expert with a counting sort, each expert runs fc1, the
activation and fc2 on its group, and the outputs are scattered back to their
tokens weighted by the gates; backward runs through the same grouping.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor, from_numpy
from .linear import linear
from .softmax import softmax

MOE_ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")


class _RouteGates(Function):
    """The gates of the chosen experts as a function of the router's
    probabilities (the choice itself, experts, is not differentiable)."""

    @staticmethod
    def forward(ctx, probs, experts, gates, renormalize):
        ctx.renormalize = renormalize
        ctx.save_for_backward(probs._array, experts, gates)
        return gates

    @staticmethod
    def backward(ctx, grad):
        probs, experts, gates = ctx.saved
        return _C.moe_route_backward(grad, probs, experts, gates, ctx.renormalize), None, None, None


class _ExpertFeedForward(Function):
    @staticmethod
    def forward(ctx, x, gates, fc1_weight, fc1_bias, fc2_weight, fc2_bias, rows, offsets, activation):
        weights = (
            fc1_weight._array,
            None if fc1_bias is None else fc1_bias._array,
            fc2_weight._array,
            None if fc2_bias is None else fc2_bias._array,
        )
        y, saved = _C.moe_ffn_forward(x._array, gates._array, rows, offsets, *weights, activation)
        ctx.activation = activation
        ctx.weights = weights
        ctx.save_for_backward(gates._array, rows, offsets, saved)
        return y

    @staticmethod
    def backward(ctx, grad):
        gates, rows, offsets, saved = ctx.saved
        dx, dgates, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias = _C.moe_ffn_backward(
            grad, gates, rows, offsets, *ctx.weights, saved, ctx.activation
        )
        return dx, dgates, dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias, None, None, None


def moe_capacity(capacity_factor: float | None, tokens: int, top_k: int, n_experts: int) -> int:
    """The slots each expert keeps: ``ceil(capacity_factor * tokens * top_k /
    n_experts)`` (the Switch Transformer's expert capacity), or -1 (no limit)
    when ``capacity_factor`` is None."""
    if capacity_factor is None:
        return -1
    return math.ceil(capacity_factor * tokens * top_k / n_experts)


def _check_capacity_factor(op: str, capacity_factor) -> None:
    if capacity_factor is None:
        return
    if (
        not isinstance(capacity_factor, numbers.Real)
        or isinstance(capacity_factor, bool)
        or not math.isfinite(capacity_factor)
        or capacity_factor <= 0
    ):
        raise ValueError(f"{op}: argument 'capacity_factor' expected None or a number > 0, got {capacity_factor!r}")


def moe_feed_forward(
    x: Tensor,
    router_weight: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor | None,
    fc2_weight: Tensor,
    fc2_bias: Tensor | None,
    *,
    top_k: int,
    activation: str = "gelu",
    capacity_factor: float | None = None,
    renormalize: bool = True,
) -> tuple:
    """A mixture-of-experts feed-forward layer; returns ``(y, aux_loss)``.

    - ``x`` [..., d_model]; ``router_weight`` [n_experts, d_model]: the router
      is ``softmax(x @ router_weight.T)`` over the experts.
    - Each token goes to its ``top_k`` most probable experts (ties: the
      lower index), weighted by their probabilities, renormalized to sum to 1
      over the top_k as Mixtral does (``renormalize=False``: the raw
      probabilities, as the Switch Transformer's top-1).
    - Expert e is ``fc2_e(activation(fc1_e(x)))``: ``fc1_weight`` [n_experts,
      d_ff, d_model] ([n_experts, 2 d_ff, d_model] for "swiglu": the gate,
      then the up projection), ``fc2_weight`` [n_experts, d_model, d_ff],
      biases [n_experts, fc1's width] and [n_experts, d_model] or None.
      ``activation``: "relu", "gelu", "gelu_tanh" or "swiglu".
    - ``capacity_factor``: None (every slot runs) or a number > 0: expert e
      then runs at most ``ceil(capacity_factor * tokens * top_k /
      n_experts)`` slots, every token's first choice before any second
      choice, in token order; a dropped slot contributes 0 (the residual
      connection around the layer carries the token).
    - ``aux_loss``: the Switch Transformer's load-balancing loss
      ``n_experts * sum_e f_e * P_e``, where ``f_e`` is the fraction of the
      ``tokens * top_k`` slots the router sent to e (before any dropping)
      and ``P_e`` the mean router probability of e; 1 when perfectly
      balanced. It is differentiable through ``P``.

    y has x's shape. float32. Differentiable in x and every weight, through
    the gates into the router.
    """
    op = "moe_feed_forward"
    for name, value in (("x", x), ("router_weight", router_weight), ("fc1_weight", fc1_weight)):
        check_tensor(op, name, value)
    check_tensor(op, "fc2_weight", fc2_weight)
    if activation not in MOE_ACTIVATIONS:
        raise ValueError(
            f"{op}: argument 'activation' expected one of {', '.join(map(repr, MOE_ACTIVATIONS))}, got {activation!r}"
        )
    if router_weight.ndim != 2 or x.ndim < 1 or router_weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{op}: argument 'router_weight' expected [n_experts, d_model={x.shape[-1] if x.ndim else '?'}], "
            f"got shape {router_weight.shape}"
        )
    n_experts = router_weight.shape[0]
    if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or not 1 <= top_k <= n_experts:
        raise ValueError(f"{op}: argument 'top_k' expected an int in [1, n_experts={n_experts}], got {top_k!r}")
    _check_capacity_factor(op, capacity_factor)
    if not isinstance(renormalize, bool):
        raise TypeError(f"{op}: argument 'renormalize' expected a bool, got {type(renormalize).__name__}")
    d_model = x.shape[-1]
    tokens = x.reshape(-1, d_model)
    n_tokens = tokens.shape[0]
    probs = softmax(linear(tokens, router_weight))
    experts, gates = _C.moe_route(probs._array, int(top_k), renormalize)
    gates = _RouteGates.apply(probs, experts, gates, renormalize)
    capacity = moe_capacity(capacity_factor, n_tokens, int(top_k), n_experts)
    rows, offsets, load = _C.moe_plan(experts, n_experts, capacity)
    y = _ExpertFeedForward.apply(tokens, gates, fc1_weight, fc1_bias, fc2_weight, fc2_bias, rows, offsets, activation)
    # f_e: the fraction of slots routed to e, a constant; P_e: the mean probability of e.
    fraction = np.asarray(load, dtype=np.float32) / np.float32(max(n_tokens * top_k, 1))
    aux_loss = (probs.mean(0) * from_numpy(fraction)).sum() * float(n_experts)
    return y.reshape(*x.shape), aux_loss


__all__ = ["moe_feed_forward", "moe_capacity", "MOE_ACTIVATIONS"]
