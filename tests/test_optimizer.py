"""optim.AdamW, optim.SGD, weight_decay_groups and the LR schedules.

Every step is compared with a float64 reference of PyTorch's update
(reference.adamw, reference.sgd) evaluated from the float32 state just
before that step, over several steps and parameter groups with their own
hyperparameters. Resuming from a saved state gives the next steps bit for
bit; the schedules follow their formulas."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close

import attnkit
import attnkit.nn.functional as F
import attnkit.optim.optimizer as optimizer_module
from attnkit import nn, optim

SHAPES = [(3, 5), (17,), (1,), (127,), (4, 4)]


def make_parameters(rng):
    return [nn.Parameter(attnkit.tensor(rng.standard_normal(s).astype(np.float32))) for s in SHAPES]


def random_gradients(rng, params):
    for p in params:
        scale = 10.0 ** rng.uniform(-3, 1, p.shape)
        p.grad = attnkit.tensor((rng.standard_normal(p.shape) * scale).astype(np.float32))


def copy(tensor):
    return None if tensor is None else tensor.numpy().copy()


def values(p):
    return p.detach().numpy()


# ----------------------------------------------------------------- AdamW ---


def test_adamw_matches_reference_over_steps_and_groups(cpu_isa, rng):
    params = make_parameters(rng)
    groups = [
        dict(params=params[:2], lr=1e-2, weight_decay=0.1),
        dict(params=params[2:4], lr=3e-3, weight_decay=0.0, betas=(0.8, 0.9), eps=1e-6),
        dict(params=params[4:]),
    ]  # the defaults
    opt = optim.AdamW(groups, lr=2e-3, weight_decay=0.05)
    settings = (
        [dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)] * 2
        + [dict(lr=3e-3, beta1=0.8, beta2=0.9, eps=1e-6, weight_decay=0.0)] * 2
        + [dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05)]
    )
    steps = [0] * len(params)
    for iteration in range(5):
        random_gradients(rng, params)
        if iteration == 2:
            params[1].grad = None  # skipped this step: its step count falls behind
        before = []
        for p in params:
            state = opt.state[p] if p in opt.state else None
            zeros = np.zeros(p.shape, np.float32)
            before.append(
                (
                    copy(p.detach()),
                    copy(p.grad),
                    copy(state["exp_avg"]) if state else zeros,
                    copy(state["exp_avg_sq"]) if state else zeros,
                )
            )
        opt.step()
        for i, p in enumerate(params):
            if before[i][1] is None:
                np.testing.assert_array_equal(values(p), before[i][0])
                continue
            steps[i] += 1
            state = opt.state[p]
            assert state["step"] == steps[i]
            arguments = dict(step=steps[i], **settings[i])
            expected = reference.adamw(*before[i], **arguments)
            scales = reference.adamw_term_magnitudes(*before[i], **arguments)
            for actual, want, scale in zip(
                (values(p), state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()), expected, scales
            ):
                assert_elementwise_close(actual, want, scale=scale)
    assert steps == [5, 4, 5, 5, 5]


def test_adamw_shares_native_calls_between_groups(monkeypatch, rng):
    calls = []
    real = optimizer_module.adamw_

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(optimizer_module, "adamw_", counting)
    params = make_parameters(rng)
    random_gradients(rng, params)
    # decay / no-decay with one lr: one call, the no-decay ones masked
    optim.AdamW([dict(params=params[:3], weight_decay=0.1), dict(params=params[3:], weight_decay=0.0)]).step()
    assert calls == [5]
    calls.clear()
    optim.AdamW([dict(params=params[:3], lr=0.1), dict(params=params[3:], lr=0.2)]).step()
    assert sorted(calls) == [2, 3]
    calls.clear()
    optim.AdamW(
        [
            dict(params=params[:1], weight_decay=0.1),
            dict(params=params[1:3], weight_decay=0.2),
            dict(params=params[3:], weight_decay=0.0),
        ]
    ).step()
    assert sorted(calls) == [2, 3]  # the non-decaying two ride with the first call


# ------------------------------------------------------------------- SGD ---

SGD_VARIANTS = [
    dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.1),
    dict(momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.3, nesterov=False, weight_decay=0.01),
    dict(momentum=0.8, dampening=0.0, nesterov=True, weight_decay=0.05),
]


def test_sgd_reference_matches_a_hand_computed_step():
    # Nesterov, weight decay, an existing buffer: d = 2 + 0.5 * 1 = 2.5,
    # b = 0.9 * 1 + 2.5 = 3.4, d = 2.5 + 0.9 * 3.4 = 5.56, p = 1 - 0.1 * 5.56.
    p, b = reference.sgd(
        np.array([1.0]),
        np.array([2.0]),
        np.array([1.0]),
        lr=0.1,
        momentum=0.9,
        dampening=0.0,
        weight_decay=0.5,
        nesterov=True,
    )
    np.testing.assert_allclose(p, [1 - 0.556], rtol=1e-15)
    np.testing.assert_allclose(b, [3.4], rtol=1e-15)


@pytest.mark.parametrize("variant", SGD_VARIANTS)
def test_sgd_matches_reference_over_steps_and_groups(rng, variant):
    params = make_parameters(rng)
    opt = optim.SGD([dict(params=params[:3], lr=0.1), dict(params=params[3:], lr=0.03, weight_decay=0.2)], **variant)
    settings = [dict(variant, lr=0.1)] * 3 + [dict(variant, lr=0.03, weight_decay=0.2)] * 2
    for _ in range(4):
        random_gradients(rng, params)
        before = []
        for p in params:
            buffer = opt.state[p]["momentum_buffer"].numpy().copy() if p in opt.state else None
            before.append((copy(p.detach()), copy(p.grad), buffer))
        opt.step()
        for i, p in enumerate(params):
            expected_p, expected_buffer = reference.sgd(*before[i], **settings[i])
            scale_p, scale_buffer = reference.sgd_term_magnitudes(*before[i], **settings[i])
            assert_elementwise_close(values(p), expected_p, scale=scale_p)
            if variant["momentum"] == 0:
                assert p not in opt.state
            else:
                assert_elementwise_close(opt.state[p]["momentum_buffer"].numpy(), expected_buffer, scale=scale_buffer)


# ------------------------------------------------------------ bad input ---


def test_optimizer_argument_errors(rng):
    params = make_parameters(rng)
    with pytest.raises(ValueError, match="AdamW: got an empty parameter list"):
        optim.AdamW([])
    with pytest.raises(TypeError, match="expected an iterable of tensors"):
        optim.AdamW(params[0])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.AdamW([dict(params=params[:2]), dict(params=params[1:])])
    with pytest.raises(ValueError, match="a parameter appears twice"):
        optim.SGD([params[0], params[0]])
    with pytest.raises(TypeError, match="an ordered sequence"):
        optim.SGD([dict(params=set(params))])
    derived = F.linear(attnkit.tensor(np.ones((1, 5), np.float32)), params[0])
    with pytest.raises(ValueError, match="params\\[0\\] is not a leaf tensor"):
        optim.SGD([derived])
    with pytest.raises(ValueError, match="AdamW: argument 'lr' expected a finite number >= 0.0"):
        optim.AdamW(params, lr=-1.0)
    with pytest.raises(ValueError, match="AdamW: argument 'betas\\[0\\]'"):
        optim.AdamW(params, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="AdamW: argument 'betas' expected a pair"):
        optim.AdamW(params, betas=0.9)
    with pytest.raises(ValueError, match="nesterov momentum needs momentum > 0"):
        optim.SGD(params, nesterov=True)
    with pytest.raises(TypeError, match="a dict with a 'params' entry"):
        optim.SGD([dict(lr=0.1)])
    with pytest.warns(UserWarning, match="no attnkit op computes a gradient in float16"):
        half = nn.Parameter(attnkit.tensor(np.ones(3, np.float32)).to(attnkit.float16))
    half.grad = attnkit.tensor(np.ones(3, np.float32)).to(attnkit.float16)
    with pytest.raises(TypeError, match="SGD.step: parameters and gradients must be float32"):
        optim.SGD([half]).step()


def test_state_is_keyed_by_identity_and_starts_empty(rng):
    params = make_parameters(rng)
    twin = nn.Parameter(attnkit.tensor(values(params[0]).copy()))
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    assert params[0] not in opt.state and len(opt.state) == 0
    assert opt.state[params[0]] == {}  # read as a defaultdict, as PyTorch's
    assert params[0] in opt.state and twin not in opt.state
    random_gradients(rng, params)
    opt.step()
    assert list(opt.state) == params and set(opt.state[params[0]]) == {"momentum_buffer"}
    del opt.state[params[1]]
    assert params[1] not in opt.state
    with pytest.raises(KeyError):
        del opt.state[twin]


def test_zero_grad_and_closure(rng):
    params = make_parameters(rng)
    opt = optim.SGD(params, lr=0.1)
    random_gradients(rng, params)
    opt.zero_grad(set_to_none=False)
    assert all((p.grad.numpy() == 0).all() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    calls = []

    def closure():
        calls.append(attnkit.is_grad_enabled())
        random_gradients(rng, params)
        return 1.5

    with attnkit.no_grad():
        assert opt.step(closure) == 1.5
    assert calls == [True]


def test_weight_decay_groups_exempts_biases_and_norm_weights():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(9, 4)
            self.proj = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)
            self.rms = nn.RMSNorm(4)
            self.head = nn.Linear(4, 9, bias=False)
            self.head.weight = self.embed.weight
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)

    model = Model()
    decay, no_decay = optim.weight_decay_groups(model, 0.1, lr=3e-4)
    assert [id(p) for p in decay["params"]] == [id(model.embed.weight), id(model.proj.weight)]
    assert [id(p) for p in no_decay["params"]] == [
        id(model.proj.bias),
        id(model.norm.weight),
        id(model.norm.bias),
        id(model.rms.weight),
    ]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert decay["lr"] == no_decay["lr"] == 3e-4
    opt = optim.AdamW([decay, no_decay])
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(TypeError, match="argument 'module' expected an attnkit.nn.Module"):
        optim.weight_decay_groups([], 0.1)


# ------------------------------------------------------- state and resume ---


def bytes_of(tensor):
    return np.asarray(tensor.detach()).view(np.uint8).copy()


def build(kind, seed):
    attnkit.manual_seed(seed)
    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    if kind == "adamw":
        opt = optim.AdamW(optim.weight_decay_groups(model, 0.1), lr=1e-2, betas=(0.9, 0.95))
    else:
        opt = optim.SGD(optim.weight_decay_groups(model, 0.01), lr=0.05, momentum=0.9, nesterov=True)
    return model, opt, optim.WarmupCosineLR(opt, warmup_steps=2, total_steps=8, min_lr_ratio=0.1)


def take_steps(model, opt, scheduler, gradients):
    for step_gradients in gradients:
        for p, g in zip(model.parameters(), step_gradients):
            p.grad = attnkit.tensor(g)
        opt.step()
        scheduler.step()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, rng, kind):
    model, opt, scheduler = build(kind, seed=0)
    shapes = [p.shape for p in model.parameters()]
    gradients = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
    take_steps(model, opt, scheduler, gradients[:3])
    path = tmp_path / "checkpoint.safetensors"
    attnkit.save(
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, path
    )
    take_steps(model, opt, scheduler, gradients[3:])

    resumed, resumed_opt, resumed_scheduler = build(kind, seed=1)  # other initial weights
    checkpoint = attnkit.load(path)
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    resumed_scheduler.load_state_dict(checkpoint["scheduler"])
    take_steps(resumed, resumed_opt, resumed_scheduler, gradients[3:])

    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert np.array_equal(bytes_of(a), bytes_of(b)), name
    for a, b in zip(model.parameters(), resumed.parameters()):
        first, second = opt.state[a], resumed_opt.state[b]
        assert first.keys() == second.keys()
        for key in first:
            if isinstance(first[key], attnkit.Tensor):
                assert np.array_equal(bytes_of(first[key]), bytes_of(second[key])), key
            else:
                assert first[key] == second[key]
    assert opt.param_groups[0]["lr"] == resumed_opt.param_groups[0]["lr"]
    assert scheduler.state_dict() == resumed_scheduler.state_dict()


def test_load_state_dict_copies_and_checks(rng):
    params = make_parameters(rng)
    opt = optim.AdamW(params)
    random_gradients(rng, params)
    opt.step()
    other = optim.AdamW([nn.Parameter(attnkit.tensor(values(p).copy())) for p in params])
    state = opt.state_dict()
    assert list(state["state"]) == [0, 1, 2, 3, 4] and state["param_groups"][0]["params"] == [0, 1, 2, 3, 4]
    other.load_state_dict(state)
    kept = [copy(s["exp_avg"]) for s in (other.state[p] for p in other.param_groups[0]["params"])]
    opt.step()  # the original moves on; the copy's state must not follow it
    for p, before in zip(other.param_groups[0]["params"], kept):
        np.testing.assert_array_equal(other.state[p]["exp_avg"].numpy(), before)

    with pytest.raises(ValueError, match="the saved state has 2 parameter groups, this optimizer 1"):
        other.load_state_dict({"state": {}, "param_groups": [dict(state["param_groups"][0])] * 2})
    smaller = optim.AdamW(make_parameters(rng)[:4])
    with pytest.raises(ValueError, match="has 5 parameters, this optimizer's 4"):
        smaller.load_state_dict(state)
    wrong_shape = optim.AdamW([nn.Parameter(attnkit.tensor(np.ones(2, np.float32))) for _ in SHAPES])
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 0 is a float32 tensor of shape"):
        wrong_shape.load_state_dict(state)
    with pytest.raises(ValueError, match="expected a dict with keys 'param_groups' and 'state'"):
        other.load_state_dict({"state": {}})


# ------------------------------------------------------------- schedules ---


def close(a, b):
    # the same formula in float64, evaluated in another order
    return math.isclose(a, b, rel_tol=4 * sys.float_info.epsilon)


def lrs_seen_by_the_optimizer(opt, scheduler, steps):
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in opt.param_groups])
        scheduler.step()
    return seen


def test_inverse_sqrt_schedule_is_the_papers(rng):
    params = make_parameters(rng)
    opt = optim.AdamW([dict(params=params[:2], lr=1.0), dict(params=params[2:], lr=0.5)], betas=(0.9, 0.98), eps=1e-9)
    scheduler = optim.InverseSqrtLR(opt, d_model=512, warmup_steps=40)
    seen = lrs_seen_by_the_optimizer(opt, scheduler, 100)
    for t, (first, second) in enumerate(seen, start=1):
        lrate = 1 / math.sqrt(512) * min(1 / math.sqrt(t), t / 40**1.5)
        assert close(first, lrate) and close(second, 0.5 * lrate)
    peak = max(range(100), key=lambda i: seen[i][0]) + 1
    assert peak == 40 and close(seen[39][0], 1 / math.sqrt(512 * 40))
    assert scheduler.get_last_lr() == [group["lr"] for group in opt.param_groups]


def cosine_formula(t, warmup, total, ratio):
    if t <= warmup:
        return t / warmup
    if t > total:
        return ratio
    return ratio + (1 - ratio) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2


def linear_formula(t, warmup, total, ratio):
    if t <= warmup:
        return t / warmup
    if t > total:
        return ratio
    return 1 - (1 - ratio) * (t - warmup) / (total - warmup)


@pytest.mark.parametrize(
    "schedule,formula", [(optim.WarmupCosineLR, cosine_formula), (optim.WarmupLinearLR, linear_formula)]
)
@pytest.mark.parametrize("warmup,total,ratio", [(3, 10, 0.1), (0, 7, 0.0), (4, 4, 0.25)])
def test_warmup_schedules_follow_their_formulas(rng, schedule, formula, warmup, total, ratio):
    opt = optim.SGD(make_parameters(rng), lr=2.0)
    scheduler = schedule(opt, warmup_steps=warmup, total_steps=total, min_lr_ratio=ratio)
    seen = [lrs[0] for lrs in lrs_seen_by_the_optimizer(opt, scheduler, total + 3)]
    for t, lr in enumerate(seen, start=1):
        assert close(lr, 2.0 * formula(t, warmup, total, ratio)), t
    if warmup:
        assert seen[warmup - 1] == 2.0  # the warmup ends at the base lr exactly
    assert seen[-1] == 2.0 * ratio  # the floor after the schedule
    if total > warmup:
        assert seen[total - 1] == 2.0 * ratio  # reached exactly at the last decay step
    assert all(a >= b for a, b in zip(seen[warmup:], seen[warmup + 1 :]))


def test_scheduler_state_round_trip_and_errors(rng):
    opt = optim.SGD(make_parameters(rng), lr=1.0)
    scheduler = optim.WarmupLinearLR(opt, 2, 10)
    for _ in range(4):
        scheduler.step()
    state = scheduler.state_dict()
    assert state == {"warmup_steps": 2, "total_steps": 10, "min_lr_ratio": 0.0, "base_lrs": [1.0], "last_step": 4}
    other_opt = optim.SGD(make_parameters(rng), lr=1.0)
    other = optim.WarmupLinearLR(other_opt, 2, 10)
    other.load_state_dict(state)
    assert other_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 1 - 3 / 8
    with pytest.raises(ValueError, match="expected keys"):
        other.load_state_dict({"last_step": 1})
    with pytest.raises(ValueError, match="argument 'total_steps' expected an integer >= 5"):
        optim.WarmupCosineLR(opt, 5, 4)
    with pytest.raises(ValueError, match=r"argument 'min_lr_ratio' expected a number in \[0, 1\]"):
        optim.WarmupCosineLR(opt, 1, 4, min_lr_ratio=1.5)
    with pytest.raises(ValueError, match="argument 'warmup_steps' expected an integer >= 1"):
        optim.InverseSqrtLR(opt, 512, warmup_steps=0)
    with pytest.raises(TypeError, match="argument 'optimizer' expected an attnkit.optim Optimizer"):
        optim.InverseSqrtLR("adam", 512)
