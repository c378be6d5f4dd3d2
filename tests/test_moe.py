"""Mixture of experts: the native routing, grouping and expert FFNs against a
float64 dense reference (every expert on every token, masked by the gates),
that reference's gradients checked by finite differences, the load-balancing
loss against its formula, capacity dropping, bad arguments, and the sparse GPT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close

import attnkit
import attnkit.nn.functional as F
from attnkit import _C, nn
from attnkit.models import GPT, GPTConfig


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def activation_forward(h, activation):
    if activation == "swiglu":
        return reference.swiglu(h)
    if activation == "relu":
        return reference.relu(h)
    return reference.gelu(h, "tanh" if activation == "gelu_tanh" else "none")


def activation_backward(dh, h, activation):
    if activation == "swiglu":
        return reference.swiglu_backward(dh, h)
    if activation == "relu":
        return dh * reference.relu_derivative(h)
    return dh * reference.gelu_derivative(h, "tanh" if activation == "gelu_tanh" else "none")


def route(probs, top_k, capacity, renormalize=True):
    """(experts [N, k], gates [N, k], kept [N, k] bool, load [E]): the top_k by
    a stable sort (ties to the lower index), and the kept slots in priority
    order (every first choice in token order, then every second, ...)."""
    n, n_experts = probs.shape
    experts = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    chosen = np.take_along_axis(probs, experts, axis=1)
    gates = chosen / chosen.sum(axis=1, keepdims=True) if renormalize else chosen
    kept = np.ones_like(experts, dtype=bool)
    load = np.bincount(experts.reshape(-1), minlength=n_experts)
    if capacity >= 0:
        filled = np.zeros(n_experts, np.int64)
        for j in range(top_k):
            for t in range(n):
                e = experts[t, j]
                kept[t, j] = filled[e] < capacity
                filled[e] += kept[t, j]
    return experts, gates, kept, load


class DenseMoE:
    """The dense reference: every expert on every token in ``dtype``, the
    outputs masked by the gates. ``mm`` is the matrix product to use."""

    def __init__(self, params, top_k, activation, capacity=-1, renormalize=True, dtype=np.float64, mm=None):
        self.p = {name: np.asarray(value, dtype) for name, value in params.items()}
        self.top_k, self.activation, self.capacity, self.renormalize = top_k, activation, capacity, renormalize
        self.dtype = dtype
        self.mm = mm or (lambda a, b: np.matmul(a, b))

    def cast(self, a):
        return np.asarray(a, self.dtype)

    def forward(self, routing=None):
        p, mm = self.p, self.mm
        x = p["x"]
        probs = self.cast(softmax(mm(x, p["router"].T)))
        experts, gates, kept, load = routing or route(probs, self.top_k, self.capacity, self.renormalize)
        n_experts = p["router"].shape[0]
        mask = np.zeros((x.shape[0], n_experts), self.dtype)
        np.put_along_axis(mask, experts, self.cast(gates * kept), axis=1)
        pre, hidden, outs = [], [], []
        y = np.zeros_like(x)
        for e in range(n_experts):
            pre.append(self.cast(mm(x, p["w1"][e].T) + p["b1"][e]))
            hidden.append(self.cast(activation_forward(pre[e], self.activation)))
            outs.append(self.cast(mm(hidden[e], p["w2"][e].T) + p["b2"][e]))
            y = self.cast(y + mask[:, e : e + 1] * outs[e])
        aux = n_experts * np.sum(load / (x.shape[0] * self.top_k) * probs.mean(axis=0))
        self.saved = (probs, experts, gates, kept, load, mask, pre, hidden, outs)
        return y, aux

    def backward(self, dy, daux=0.0):
        """Gradients of sum(dy * y) + daux * aux, by hand."""
        p, mm = self.p, self.mm
        dy = self.cast(dy)
        probs, experts, gates, kept, load, mask, pre, hidden, outs = self.saved
        x = p["x"]
        n, n_experts = probs.shape
        grads = {name: np.zeros_like(value) for name, value in p.items()}
        dmask = np.zeros_like(mask)
        for e in range(n_experts):
            dmask[:, e] = np.sum(dy * outs[e], axis=1)
            dout = self.cast(mask[:, e : e + 1] * dy)
            grads["w2"][e] = mm(dout.T, hidden[e])
            grads["b2"][e] = dout.sum(axis=0)
            dpre = self.cast(activation_backward(self.cast(mm(dout, p["w2"][e])), pre[e], self.activation))
            grads["w1"][e] = mm(dpre.T, x)
            grads["b1"][e] = dpre.sum(axis=0)
            grads["x"] = self.cast(grads["x"] + mm(dpre, p["w1"][e]))
        dgates = np.take_along_axis(dmask, experts, axis=1) * kept
        dprobs = np.zeros_like(probs)
        chosen = np.take_along_axis(probs, experts, axis=1)
        if self.renormalize:
            total = chosen.sum(axis=1, keepdims=True)
            dchosen = (dgates - np.sum(dgates * gates, axis=1, keepdims=True)) / total
        else:
            dchosen = dgates
        np.put_along_axis(dprobs, experts, dchosen, axis=1)
        dprobs = dprobs + daux * n_experts * (load / (n * self.top_k)) / n
        dlogits = self.cast(probs * (dprobs - np.sum(dprobs * probs, axis=1, keepdims=True)))
        grads["router"] = mm(dlogits.T, x)
        grads["x"] = self.cast(grads["x"] + mm(dlogits, p["router"]))
        return grads


def make_params(rng, n, d_model, n_experts, d_ff, activation, router_scale=1.0):
    width = 2 * d_ff if activation == "swiglu" else d_ff
    return {
        "x": rng.standard_normal((n, d_model)),
        "router": router_scale * rng.standard_normal((n_experts, d_model)),
        "w1": rng.standard_normal((n_experts, width, d_model)) / math.sqrt(d_model),
        "b1": 0.1 * rng.standard_normal((n_experts, width)),
        "w2": rng.standard_normal((n_experts, d_model, d_ff)) / math.sqrt(d_ff),
        "b2": 0.1 * rng.standard_normal((n_experts, d_model)),
    }


def run_attnkit(params, top_k, activation, dy, daux=0.0, capacity_factor=None, renormalize=True):
    tensors = {name: attnkit.from_numpy(np.asarray(v, np.float32)).requires_grad_() for name, v in params.items()}
    y, aux = F.moe_feed_forward(
        tensors["x"],
        tensors["router"],
        tensors["w1"],
        tensors["b1"],
        tensors["w2"],
        tensors["b2"],
        top_k=top_k,
        activation=activation,
        capacity_factor=capacity_factor,
        renormalize=renormalize,
    )
    loss = (y * attnkit.from_numpy(np.asarray(dy, np.float32))).sum() + aux * daux
    loss.backward()
    return y.detach().numpy(), float(aux.item()), {name: t.grad.numpy() for name, t in tensors.items()}


def as_float32_rounded(params):
    return {name: np.asarray(value, np.float32).astype(np.float64) for name, value in params.items()}


@pytest.mark.parametrize(
    "n, d_model, n_experts, top_k, d_ff, activation",
    [
        (17, 8, 4, 2, 12, "gelu"),
        (33, 16, 8, 2, 24, "swiglu"),
        (5, 3, 3, 1, 7, "relu"),
        (40, 12, 6, 3, 9, "gelu_tanh"),
        (24, 8, 4, 4, 6, "gelu"),
    ],
)
@pytest.mark.parametrize("capacity_factor", [None, 0.75])
def test_matches_dense_reference(n, d_model, n_experts, top_k, d_ff, activation, capacity_factor):
    rng = np.random.default_rng(n * 131 + n_experts)
    params = as_float32_rounded(make_params(rng, n, d_model, n_experts, d_ff, activation))
    dy = rng.standard_normal((n, d_model)).astype(np.float32).astype(np.float64)
    daux = 0.37
    capacity = F.moe.moe_capacity(capacity_factor, n, top_k, n_experts)
    exact = DenseMoE(params, top_k, activation, capacity)
    y_exact, aux_exact = exact.forward()
    grads_exact = exact.backward(dy, daux)
    naive = DenseMoE(params, top_k, activation, capacity, dtype=np.float32, mm=reference.matmul_naive_float32)
    # the same routing as float64's: a near-tie could flip in float32 and
    # change the function, not just its rounding
    y_naive, _ = naive.forward(routing=exact.saved[1:5])
    grads_naive = naive.backward(dy, daux)

    y, aux, grads = run_attnkit(params, top_k, activation, dy, daux, capacity_factor)
    assert_reduction_close(y, y_exact, y_naive)
    assert aux == pytest.approx(aux_exact, rel=1e-5)
    for name in params:
        assert_reduction_close(grads[name], grads_exact[name], grads_naive[name])
    if capacity > 0 and capacity * n_experts < n * top_k:
        assert not exact.saved[3].all(), "the capacity limit should drop some slots here"


@pytest.mark.parametrize("activation, renormalize", [("gelu", True), ("swiglu", True), ("gelu", False)])
def test_reference_gradients_by_finite_differences(activation, renormalize):
    """The hand-written reference backward (router included) against central
    differences of the reference forward."""
    rng = np.random.default_rng(7)
    params = make_params(rng, 6, 4, 4, 5, activation)
    dy = rng.standard_normal((6, 4))
    model = DenseMoE(params, 2, activation, renormalize=renormalize)
    model.forward()
    routing = model.saved[1:5]
    grads = model.backward(dy, daux=0.5)

    def loss():
        # the routing held fixed: the top-k choice is piecewise constant
        experts = routing[0]
        probs = softmax(model.p["x"] @ model.p["router"].T)
        chosen = np.take_along_axis(probs, experts, axis=1)
        gates = chosen / chosen.sum(axis=1, keepdims=True) if renormalize else chosen
        y, aux = model.forward(routing=(experts, gates, routing[2], routing[3]))
        return np.sum(dy * y) + 0.5 * aux

    numeric = reference.central_differences(model.p, loss)
    for name in params:
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_router_gradient_by_finite_differences_of_attnkit():
    """attnkit's own forward (float32), differenced: the router's gradient
    flows through the gates and the load-balancing loss."""
    rng = np.random.default_rng(3)
    params = make_params(rng, 9, 6, 4, 8, "gelu")
    dy = rng.standard_normal((9, 6))
    _, _, grads = run_attnkit(params, 2, "gelu", dy, daux=0.5)
    step = 1e-2

    def loss(router):
        p = dict(params, router=router)
        tensors = {k: attnkit.from_numpy(np.asarray(v, np.float32)) for k, v in p.items()}
        y, aux = F.moe_feed_forward(
            tensors["x"], tensors["router"], tensors["w1"], tensors["b1"], tensors["w2"], tensors["b2"], top_k=2
        )
        return float(np.sum(dy * y.numpy().astype(np.float64))) + 0.5 * aux.item()

    router = params["router"]
    for position in [(0, 0), (1, 3), (3, 5), (2, 2)]:
        up, down = router.copy(), router.copy()
        up[position] += step
        down[position] -= step
        numeric = (loss(up) - loss(down)) / (2 * step)
        assert grads["router"][position] == pytest.approx(numeric, rel=2e-2, abs=2e-3)


def test_aux_loss_formula():
    """n_experts * sum_e f_e P_e with f_e the fraction of slots and P_e the mean probability."""
    rng = np.random.default_rng(11)
    n, d_model, n_experts, top_k = 50, 8, 5, 2
    params = make_params(rng, n, d_model, n_experts, 4, "gelu", router_scale=2.0)
    x32 = np.asarray(params["x"], np.float32)
    router32 = np.asarray(params["router"], np.float32)
    probs = softmax(x32.astype(np.float64) @ router32.astype(np.float64).T)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    f = np.array([(top == e).sum() for e in range(n_experts)]) / (n * top_k)
    expected = n_experts * float(np.sum(f * probs.mean(axis=0)))
    _, aux, _ = run_attnkit(params, top_k, "gelu", np.zeros((n, d_model)))
    assert aux == pytest.approx(expected, rel=1e-5)
    # perfectly balanced routing and uniform probabilities give exactly 1
    uniform = dict(params, router=np.zeros((n_experts, d_model)))
    _, aux, _ = run_attnkit(uniform, n_experts, "gelu", np.zeros((n, d_model)))
    assert aux == pytest.approx(1.0, rel=1e-6)


def test_routing_ties_and_renormalization():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.6, 0.1, 0.2], [0.4, 0.1, 0.4, 0.1]], np.float32)
    experts, gates = _C.moe_route(attnkit.from_numpy(probs)._array, 2, True)
    np.testing.assert_array_equal(np.asarray(experts), [[0, 1], [1, 3], [0, 2]])
    np.testing.assert_allclose(np.asarray(gates), [[0.5, 0.5], [0.75, 0.25], [0.5, 0.5]], rtol=1e-7)
    experts, gates = _C.moe_route(attnkit.from_numpy(probs)._array, 1, False)
    np.testing.assert_array_equal(np.asarray(gates)[:, 0], probs[[0, 1, 2], [0, 1, 0]])


def test_capacity_drops_later_choices_first():
    # 4 tokens, 2 experts, top-2: every token picks both; each expert keeps
    # 3 of its 4 slots, taken in priority order.
    experts = np.array([[0, 1], [0, 1], [1, 0], [0, 1]], np.int32)
    rows, offsets, load = _C.moe_plan(attnkit.from_numpy(experts)._array, 2, 3)
    rows, offsets, load = np.asarray(rows), np.asarray(offsets), np.asarray(load)
    np.testing.assert_array_equal(load, [4, 4])
    np.testing.assert_array_equal(offsets, [0, 3, 6])
    # expert 0's first choices: tokens 0, 1, 3 (rows 0, 1, 2); token 2's second choice is dropped.
    # expert 1's: token 2 first (row 3), then the second choices of tokens 0, 1 (rows 4, 5); token 3's is dropped.
    np.testing.assert_array_equal(rows, [[0, 4], [1, 5], [3, -1], [2, -1]])
    rows, offsets, _ = _C.moe_plan(attnkit.from_numpy(experts)._array, 2, -1)
    np.testing.assert_array_equal(np.asarray(offsets), [0, 4, 8])


def test_fully_dropped_token_and_idle_expert():
    """A token with every slot dropped gets 0 and no gradient; an expert no
    token reaches gets zero gradients (not stale memory)."""
    rng = np.random.default_rng(5)
    params = make_params(rng, 12, 6, 4, 5, "gelu")
    params["x"][:, 0] = 1.0
    params["router"][3] = 0.0
    params["router"][3, 0] = -50.0  # expert 3's logit is -50 for every token: never chosen
    params = as_float32_rounded(params)
    dy = rng.standard_normal((12, 6))
    y, _, grads = run_attnkit(params, 1, "gelu", dy, capacity_factor=0.25)  # capacity 1 slot per expert
    exact = DenseMoE(params, 1, "gelu", capacity=1)
    y_exact, _ = exact.forward()
    kept = exact.saved[3][:, 0]
    assert (~kept).sum() >= 8
    np.testing.assert_array_equal(y[~kept], 0.0)
    np.testing.assert_array_equal(grads["w1"][3], 0.0)
    np.testing.assert_array_equal(grads["b2"][3], 0.0)
    np.testing.assert_allclose(y, y_exact, rtol=1e-4, atol=1e-5)


def test_module_shapes_and_bad_arguments():
    layer = nn.MoEFeedForward(8, n_experts=4, top_k=2, d_ff=16, activation="swiglu", bias=False)
    assert layer.fc1_weight.shape == (4, 32, 8) and layer.fc2_weight.shape == (4, 8, 16)
    assert layer.fc1_bias is None
    x = attnkit.from_numpy(np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32))
    y = layer(x)
    assert y.shape == (2, 5, 8)
    assert layer.aux_loss.numel() == 1
    with pytest.raises(ValueError, match=r"MoEFeedForward: argument 'top_k' expected an int in \[1, n_experts=4\]"):
        nn.MoEFeedForward(8, n_experts=4, top_k=5, d_ff=16)
    with pytest.raises(ValueError, match="argument 'top_k'"):
        nn.MoEFeedForward(8, n_experts=4, top_k=0, d_ff=16)
    with pytest.raises(ValueError, match="argument 'activation'"):
        nn.MoEFeedForward(8, n_experts=4, top_k=2, d_ff=16, activation="tanh")
    with pytest.raises(ValueError, match="argument 'capacity_factor'"):
        nn.MoEFeedForward(8, n_experts=4, top_k=2, d_ff=16, capacity_factor=0)
    with pytest.raises(ValueError, match="argument 'n_experts'"):
        nn.MoEFeedForward(8, n_experts=0, top_k=1, d_ff=16)
    probs = attnkit.from_numpy(np.full((3, 4), 0.25, np.float32))._array
    with pytest.raises(ValueError, match=r"moe_route: argument 'top_k' expected an int in \[1, n_experts=4\]"):
        _C.moe_route(probs, 5, True)
    bad_ids = attnkit.from_numpy(np.array([[0, 4]], np.int32))._array
    with pytest.raises(ValueError, match=r"moe_plan: argument 'experts' expected expert ids in \[0, 4\)"):
        _C.moe_plan(bad_ids, 4, -1)


def test_ffn_refuses_an_inconsistent_grouping():
    """rows/offsets that are not a plan are refused before any kernel runs."""
    rng = np.random.default_rng(0)
    arr = lambda a, dtype=np.float32: attnkit.from_numpy(np.asarray(a, dtype))._array  # noqa: E731
    x, gates = arr(rng.standard_normal((3, 4))), arr(np.full((3, 1), 1.0))
    w1, w2 = arr(rng.standard_normal((2, 5, 4))), arr(rng.standard_normal((2, 4, 5)))
    good_offsets = arr([0, 2, 3], np.int64)
    for rows, offsets, match in [
        ([[0], [1], [1]], good_offsets, "argument 'rows'"),  # a row used twice
        ([[0], [1], [7]], good_offsets, "argument 'rows'"),  # past S
        ([[0], [1], [-1]], good_offsets, "argument 'offsets'"),  # S = 3 rows but 2 kept slots
        ([[0], [1], [2]], arr([0, 5, 3], np.int64), "argument 'offsets'"),  # decreasing
        ([[0], [1], [2]], arr([1, 2, 3], np.int64), "argument 'offsets'"),
    ]:
        with pytest.raises(ValueError, match=match):
            _C.moe_ffn_forward(x, gates, arr(rows, np.int64), offsets, w1, None, w2, None, "gelu")
    with pytest.raises(ValueError, match="argument 'fc1_weight'"):
        _C.moe_ffn_forward(x, gates, arr([[0], [1], [2]], np.int64), good_offsets, w2, None, w2, None, "gelu")
    with pytest.raises(ValueError, match="argument 'activation'"):
        _C.moe_ffn_forward(x, gates, arr([[0], [1], [2]], np.int64), good_offsets, w1, None, w2, None, "silu")


def test_sparse_gpt_trains_and_reports_aux_loss():
    attnkit.manual_seed(0)
    config = GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4, top_k=2)
    model = GPT(config)
    dense = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16))
    expert_params = 2 * (4 * (64 * 16 + 64 + 16 * 64 + 16) + 4 * 16)  # per block: experts and the router
    dense_ffn = 2 * (64 * 16 + 64 + 16 * 64 + 16)
    assert model.num_parameters() == dense.num_parameters() - dense_ffn + expert_params
    rng = np.random.default_rng(0)
    idx = attnkit.from_numpy(rng.integers(0, 32, (4, 16)).astype(np.int64))
    targets = attnkit.from_numpy((np.asarray(idx.numpy()) * 5 + 3) % 32)  # a fixed map to learn
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        logits = model(idx)
        assert model.aux_loss is not None and model.aux_loss.item() >= 0.01 * 0.99
        loss = F.cross_entropy(logits.reshape(-1, 32), targets.reshape(-1))
        optimizer.zero_grad()
        (loss + model.aux_loss).backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    assert dense(idx) is not None and dense.aux_loss is None
    with pytest.raises(ValueError, match=r"field 'top_k' expected an int in \[1, n_experts=4\]"):
        GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16, n_experts=4, top_k=5))


def test_shared_expert_against_float64_and_its_gate_gradient():
    """MoEFeedForward(shared_expert=FeedForward(...)): the routed mixture plus
    sigmoid(x @ gate) times a dense SwiGLU expert, against float64; the shared
    gate's gradient against its formula."""
    rng = np.random.default_rng(7)
    shared_expert = nn.FeedForward(8, 10, "swiglu", bias=False)
    layer = nn.MoEFeedForward(
        8, n_experts=4, top_k=2, d_ff=6, activation="swiglu", bias=False, shared_expert=shared_expert
    )
    assert layer.shared_expert.fc1.weight.shape == (20, 8) and layer.shared_expert_gate.weight.shape == (1, 8)
    x64 = rng.standard_normal((9, 8))
    x = attnkit.from_numpy(x64.astype(np.float32))
    weights = {name: p.detach().numpy().astype(np.float64) for name, p in layer.named_parameters()}
    params = {"x": x64, "router": weights["router.weight"], "w1": weights["fc1_weight"], "w2": weights["fc2_weight"]}
    params.update(b1=np.zeros((4, 12)), b2=np.zeros((4, 8)))
    routed, _ = DenseMoE(params, 2, "swiglu").forward()
    shared = reference.swiglu(x64 @ weights["shared_expert.fc1.weight"].T) @ weights["shared_expert.fc2.weight"].T
    gate = 1.0 / (1.0 + np.exp(-(x64 @ weights["shared_expert_gate.weight"].T)))
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), routed + gate * shared, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((9, 8))
    (y * attnkit.from_numpy(dy.astype(np.float32))).sum().backward()
    expected = ((dy * shared).sum(axis=1, keepdims=True) * gate * (1 - gate)).T @ x64
    np.testing.assert_allclose(layer.shared_expert_gate.weight.grad.numpy(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="argument 'shared_expert' expected None or a Module, got int"):
        nn.MoEFeedForward(8, n_experts=4, top_k=2, d_ff=6, shared_expert=10)


def test_sparse_gpt_with_dense_blocks_and_expert_widths():
    config = GPTConfig(
        vocab_size=32,
        block_size=16,
        n_layer=3,
        n_head=2,
        n_embd=16,
        d_ff=40,
        n_experts=4,
        top_k=1,
        expert_d_ff=12,
        moe_layers=[0, 2],
        moe_renormalize=False,
    )
    model = GPT(config)
    kinds = [type(block.feed_forward).__name__ for block in model.blocks]
    assert kinds == ["MoEFeedForward", "FeedForward", "MoEFeedForward"]
    assert model.blocks[0].feed_forward.d_ff == 12 and model.blocks[1].feed_forward.d_ff == 40
    assert not model.blocks[2].feed_forward.renormalize
    model(attnkit.from_numpy(np.zeros((1, 4), np.int64)))
    assert model.aux_loss is not None
    with pytest.raises(ValueError, match=r"field 'moe_layers' expected block indices in \[0, 3\), got 3"):
        GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=3, n_head=2, n_embd=16, n_experts=4, moe_layers=[3]))
    with pytest.raises(ValueError, match="field 'shared_expert_d_ff' is set but n_experts is None"):
        GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16, shared_expert_d_ff=8))
    every = dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4)
    assert GPTConfig(**every).resolved() == GPTConfig(**every, moe_layers=[1, 0]).resolved()
