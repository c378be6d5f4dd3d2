"""The fused AdamW step and gradient-norm clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close, assert_same_bits_at_thread_counts

import attnkit
import attnkit.nn.utils
import attnkit.optim.functional
from attnkit import _C

adamw_ = attnkit.optim.functional.adamw_
clip_grad_norm_ = attnkit.nn.utils.clip_grad_norm_

SHAPES = [(1,), (3,), (17,), (127,), (1000,), (3, 5), (40000,)]  # the last spans several chunks
HYPERPARAMETERS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    dict(lr=3e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1),  # GPT-style
    dict(lr=0.5, beta1=0.0, beta2=0.5, eps=1e-3, weight_decay=0.0),
]


def random_state(rng, shapes):
    """Parameters, gradients, first moments and (positive) second moments."""
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [(rng.standard_normal(s) * 10.0 ** rng.uniform(-4, 1, s)).astype(np.float32) for s in shapes]
    exp_avgs = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
    exp_avg_sqs = [(rng.uniform(0, 1, s) * 0.01).astype(np.float32) for s in shapes]
    return params, grads, exp_avgs, exp_avg_sqs


def tensors(arrays):
    return [attnkit.tensor(a) for a in arrays]


@pytest.mark.parametrize("options", HYPERPARAMETERS)
def test_adamw_matches_reference(cpu_isa, rng, options):
    params, grads, exp_avgs, exp_avg_sqs = random_state(rng, SHAPES)
    decay_mask = [i % 2 == 0 for i in range(len(SHAPES))]
    p, g, m, v = tensors(params), tensors(grads), tensors(exp_avgs), tensors(exp_avg_sqs)
    for step in (1, 2, 1000):
        before = [[t.numpy().copy() for t in ts] for ts in (p, g, m, v)]
        adamw_(p, g, m, v, step=step, decay_mask=decay_mask, **options)
        for i in range(len(SHAPES)):
            inputs = [ts[i] for ts in before]
            arguments = dict(step=step, decay=decay_mask[i], **options)
            expected = reference.adamw(*inputs, **arguments)
            scales = reference.adamw_term_magnitudes(*inputs, **arguments)
            for actual, want, scale in zip((p[i], m[i], v[i]), expected, scales):
                assert_elementwise_close(actual.numpy(), want, scale=scale)
        np.testing.assert_array_equal(g[0].numpy(), grads[0])  # gradients are only read


def test_reference_first_step_from_zero_state(rng):
    # From m = v = 0, the bias corrections make step 1 a sign step:
    # m_hat = g and v_hat = g^2, so p <- p (1 - lr wd) - lr g / (|g| + eps).
    p, g = rng.standard_normal(50), rng.standard_normal(50)
    lr, wd, eps = 0.01, 0.1, 1e-8
    new_p, _, _ = reference.adamw(
        p, g, np.zeros(50), np.zeros(50), step=1, lr=lr, beta1=0.9, beta2=0.999, eps=eps, weight_decay=wd
    )
    np.testing.assert_allclose(new_p, p * (1 - lr * wd) - lr * g / (np.abs(g) + eps), rtol=1e-12)


def test_adamw_decay_mask_default_decays_everything(rng):
    params, grads, exp_avgs, exp_avg_sqs = random_state(rng, [(8,), (9,)])
    options = dict(step=3, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.5)
    runs = []
    for mask in (None, [True, True]):
        p = tensors(params)
        adamw_(p, tensors(grads), tensors(exp_avgs), tensors(exp_avg_sqs), decay_mask=mask, **options)
        runs.append([t.numpy() for t in p])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_adamw_empty_lists_and_empty_tensors():
    adamw_([], [], [], [], step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0)
    empty = [attnkit.tensor(np.zeros(0, np.float32)) for _ in range(4)]
    adamw_(*[[t] for t in empty], step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0)


def test_adamw_bad_arguments():
    def state(*shapes):
        return [[attnkit.tensor(np.ones(s, np.float32)) for s in shapes] for _ in range(4)]

    ok = dict(step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    p, g, m, v = state((3,), (4,))
    with pytest.raises(
        ValueError,
        match=r"adamw_: argument 'grads' expected a list of 2 arrays \(one per "
        r"parameter\), got a list of 1",
    ):
        adamw_(p, g[:1], m, v, **ok)
    with pytest.raises(ValueError, match="adamw_: argument 'decay_mask' expected None or a list of 2 bools"):
        adamw_(p, g, m, v, decay_mask=[True], **ok)
    with pytest.raises(TypeError, match="adamw_: argument 'decay_mask\\[1\\]' expected a bool, got int"):
        adamw_(p, g, m, v, decay_mask=[True, 0], **ok)
    with pytest.raises(
        ValueError,
        match=r"adamw_: argument 'exp_avg_sqs\[1\]' expected the shape of "
        r"'params\[1\]', \[4\], got \[5\]",
    ):
        adamw_(p, g, m, [v[0], attnkit.tensor(np.ones(5, np.float32))], **ok)
    with pytest.raises(TypeError, match=r"adamw_: argument 'grads\[0\]' expected float32, got int64"):
        adamw_(p, [attnkit.tensor([1, 2, 3]), g[1]], m, v, **ok)
    with pytest.raises(TypeError, match=r"adamw_: argument 'params\[1\]' expected an attnkit.Tensor, got ndarray"):
        adamw_([p[0], np.ones(4, np.float32)], g, m, v, **ok)
    with pytest.raises(TypeError, match="adamw_: argument 'params' expected a list of attnkit.Tensor"):
        adamw_(p[0], g[0], m[0], v[0], **ok)
    bad_values = [
        ("step", 0, "a step number >= 1"),
        ("lr", -1e-3, "a finite learning rate >= 0"),
        ("lr", float("nan"), "a finite learning rate"),
        ("beta1", 1.0, r"a value in \[0, 1\)"),
        ("beta2", -0.1, r"a value in \[0, 1\)"),
        ("eps", -1e-8, "a finite eps >= 0"),
        ("weight_decay", float("inf"), "a finite weight decay >= 0"),
    ]
    for name, value, expected in bad_values:
        with pytest.raises(ValueError, match=f"adamw_: argument '{name}' expected {expected}"):
            adamw_(p, g, m, v, **{**ok, name: value})
    with pytest.raises(TypeError, match="adamw_: argument 'lr' expected a float, got str"):
        adamw_(p, g, m, v, **{**ok, "lr": "0.1"})
    with pytest.raises(
        ValueError, match="adamw_: argument 'step' expected a step number >= 1, got 36893488147419103232"
    ):
        adamw_(p, g, m, v, **{**ok, "step": 2**65})
    with pytest.raises(TypeError, match="adamw_: argument 'step' expected an int, got float"):
        adamw_(p, g, m, v, **{**ok, "step": 1.0})


def test_adamw_refuses_shared_memory():
    ok = dict(step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    p, g, m, v = [[attnkit.tensor(np.ones(3, np.float32)) for _ in range(2)] for _ in range(4)]
    with pytest.raises(
        ValueError,
        match=r"adamw_: argument '(params\[0\]|params\[1\])' expected memory of its own, "
        r"got memory shared with '(params\[0\]|params\[1\])'",
    ):
        adamw_([p[0], p[0]], g, m, v, **ok)  # a tied weight listed twice
    with pytest.raises(ValueError, match="expected memory of its own, got memory shared with"):
        adamw_(p, g, [p[0], m[1]], v, **ok)
    with pytest.raises(
        ValueError,
        match=r"adamw_: argument 'grads\[1\]' expected memory apart from what the step "
        r"writes, got memory shared with 'exp_avg_sqs\[0\]'",
    ):
        adamw_(p, [g[0], v[0]], m, v, **ok)
    # One gradient used for two parameters is fine: gradients are only read.
    adamw_(p, [g[0], g[0]], m, v, **ok)


# -------------------------------------------------------- gradient norm --


def parameters_with_grads(grads):
    params = []
    for grad in grads:
        p = attnkit.tensor(np.zeros(grad.shape, np.float32), requires_grad=True)
        p.grad = attnkit.tensor(grad)
        params.append(p)
    return params


def naive_float32_norm(grads):
    total = np.float32(0.0)
    for grad in grads:
        total += np.sum(grad.astype(np.float32) ** 2, dtype=np.float32)
    return np.sqrt(total)


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_reference(rng, max_norm):
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    params = parameters_with_grads(grads)
    total = clip_grad_norm_(params, max_norm)
    expected = reference.global_norm(grads)
    assert isinstance(total, float)
    assert_reduction_close(np.array([total]), np.array([expected]), np.array([naive_float32_norm(grads)]))
    clip = max_norm / (expected + 1e-6)
    for p, grad in zip(params, grads):
        if clip < 1.0:
            assert_elementwise_close(p.grad.numpy(), grad.astype(np.float64) * clip)
        else:
            np.testing.assert_array_equal(p.grad.numpy(), grad)  # untouched


def test_clip_grad_norm_accumulates_in_double():
    # Squares of 1e30 overflow float32; in double they are exact and the norm finite.
    grads = [np.full(1000, 1e30, np.float32), np.full(7, -3e29, np.float32)]
    params = parameters_with_grads(grads)
    with np.errstate(over="ignore"):
        assert not np.isfinite(naive_float32_norm(grads))
    total = clip_grad_norm_(params, 1.0)
    assert total == pytest.approx(reference.global_norm(grads), rel=2**-50)
    assert_elementwise_close(
        params[0].grad.numpy(), grads[0].astype(np.float64) / (reference.global_norm(grads) + 1e-6)
    )


def test_grad_norm_same_for_any_thread_count(rng):
    grads = [rng.standard_normal(n).astype(np.float32) for n in (100_003, 7, 65_536, 300_000)]
    arrays = [attnkit.tensor(g)._array for g in grads]
    assert_same_bits_at_thread_counts(lambda: _C.sum_of_squares(arrays), (1, 2))


def test_clip_grad_norm_inputs(rng):
    grad = rng.standard_normal(10).astype(np.float32)
    single = parameters_with_grads([grad])[0]
    assert clip_grad_norm_(single, 100.0) == pytest.approx(np.linalg.norm(grad.astype(np.float64)), rel=1e-15)
    no_grad = attnkit.tensor(np.ones(3, np.float32), requires_grad=True)
    assert clip_grad_norm_([no_grad], 1.0) == 0.0
    assert clip_grad_norm_(iter([no_grad, single]), 1e9) == pytest.approx(np.linalg.norm(grad.astype(np.float64)))


def test_clip_grad_norm_nonfinite():
    params = parameters_with_grads([np.array([1.0, np.inf, 2.0], np.float32)])
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm of the gradients is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_(params, 1.0) == math.inf
    # As in PyTorch: the factor max_norm / inf = 0 zeroes the finite entries; inf * 0 is NaN.
    np.testing.assert_array_equal(params[0].grad.numpy(), [0.0, np.nan, 0.0])
    params = parameters_with_grads([np.array([1.0, np.nan], np.float32)])
    assert math.isnan(clip_grad_norm_(params, 1.0))
    assert np.isnan(params[0].grad.numpy()).all()


def test_clip_grad_norm_bad_arguments():
    params = parameters_with_grads([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="clip_grad_norm_: argument 'norm_type' expected 2 \\(the L2 norm\\), got 1"):
        clip_grad_norm_(params, 1.0, norm_type=1)
    with pytest.raises(TypeError, match="clip_grad_norm_: argument 'max_norm' expected a float, got str"):
        clip_grad_norm_(params, "1.0")
    with pytest.raises(TypeError, match=r"clip_grad_norm_: argument 'parameters\[1\]' expected an attnkit.Tensor"):
        clip_grad_norm_([params[0], 3.0], 1.0)
    with pytest.raises(TypeError, match=r"sum_of_squares: argument 'arrays\[0\]' expected float32, got int64"):
        _C.sum_of_squares([attnkit.tensor([1, 2])._array])
