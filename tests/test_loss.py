"""F.cross_entropy against the float64 references in reference/loss.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_same_bits_at_thread_counts
from op_check import check_op, run_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

SIZES = [1, 3, 17, 64, 127, 1000]


def random_targets(rng, n, vocab, ignore_index=-100, ignored_fraction=0.0):
    targets = rng.integers(0, vocab, n)
    targets[rng.random(n) < ignored_fraction] = ignore_index
    return targets


def upstream_gradient(rng, n, reduction):
    """A random gradient of the loss's shape (float32)."""
    if reduction == "none":
        return rng.standard_normal(n).astype(np.float32)
    return np.float32(rng.standard_normal())


def run(logits, targets, grad, **options):
    """Our loss and dlogits."""
    loss, (dlogits, _) = run_op(F.cross_entropy, [logits, np.asarray(targets)], grad, **options)
    return loss, dlogits


def check(logits, targets, grad, **options):
    """check_op: loss and dlogits within twice the error of the naive float32
    computation."""

    def expected(z, targets, grad):
        return (
            reference.cross_entropy(z, targets, **options),
            reference.cross_entropy_backward(grad, z, targets, **options),
        )

    loss, (dlogits,) = check_op(F.cross_entropy, [logits, np.asarray(targets)], grad, expected, options=options)
    return loss, dlogits


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("vocab", SIZES)
def test_matches_reference(cpu_isa, rng, n, vocab):
    logits = (3 * rng.standard_normal((n, vocab))).astype(np.float32)
    check(logits, random_targets(rng, n, vocab), upstream_gradient(rng, n, "mean"))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_reductions_smoothing_and_ignored_rows(cpu_isa, rng, reduction, label_smoothing):
    n, vocab = 70, 333
    logits = (2 * rng.standard_normal((n, vocab))).astype(np.float32)
    targets = random_targets(rng, n, vocab, ignore_index=-1, ignored_fraction=0.3)
    loss, dlogits = check(
        logits,
        targets,
        upstream_gradient(rng, n, reduction),
        ignore_index=-1,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    ignored = targets == -1
    np.testing.assert_array_equal(dlogits[ignored], 0)
    if reduction == "none":
        assert loss.shape == (n,)
        np.testing.assert_array_equal(loss[ignored], 0)
    else:
        assert loss.shape == ()


def test_large_vocabulary(cpu_isa, rng):
    n, vocab = 4, 50257
    logits = (4 * rng.standard_normal((n, vocab))).astype(np.float32)
    check(logits, random_targets(rng, n, vocab), upstream_gradient(rng, n, "mean"), label_smoothing=0.1)


def test_int32_targets_give_the_same_bits(cpu_isa, rng):
    logits = rng.standard_normal((40, 50)).astype(np.float32)
    targets = random_targets(rng, 40, 50, ignored_fraction=0.2)
    wide = run(logits, targets.astype(np.int64), np.float32(1.5), label_smoothing=0.2)
    narrow = run(logits, targets.astype(np.int32), np.float32(1.5), label_smoothing=0.2)
    for a, b in zip(wide, narrow):
        np.testing.assert_array_equal(a, b)


def test_ignore_index_inside_the_vocabulary(cpu_isa, rng):
    """ignore_index may name a real class: rows with that target are ignored."""
    logits = rng.standard_normal((30, 8)).astype(np.float32)
    targets = random_targets(rng, 30, 8)
    loss, dlogits = check(logits, targets, np.float32(0.7), ignore_index=3)
    np.testing.assert_array_equal(dlogits[targets == 3], 0)


def test_all_targets_ignored(cpu_isa, rng):
    """The mean over no rows is NaN, as in PyTorch; its gradient is 0."""
    logits = rng.standard_normal((5, 7)).astype(np.float32)
    targets = np.full(5, -100)
    loss, dlogits = run(logits, targets, np.float32(1.0))
    assert np.isnan(loss)
    np.testing.assert_array_equal(dlogits, 0)
    loss, dlogits = run(logits, targets, np.float32(1.0), reduction="sum")
    assert loss == 0
    np.testing.assert_array_equal(dlogits, 0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_large_logits_are_stable(cpu_isa, rng, label_smoothing):
    n, vocab = 33, 500
    logits = rng.uniform(-1e4, 1e4, (n, vocab)).astype(np.float32)
    # Rows of close large values, where the loss is O(1) after cancellation.
    logits[:10] = (1e4 + rng.standard_normal((10, vocab))).astype(np.float32)
    logits[10:15] = (-1e4 + rng.standard_normal((5, vocab))).astype(np.float32)
    targets = random_targets(rng, n, vocab)
    loss, dlogits = check(
        logits, targets, upstream_gradient(rng, n, "none"), label_smoothing=label_smoothing, reduction="none"
    )
    assert np.isfinite(loss).all() and np.isfinite(dlogits).all()


@pytest.mark.parametrize("magnitude", [1e30, 1e37, 3e38])
def test_logits_near_the_largest_float(cpu_isa, rng, magnitude):
    """With label smoothing the loss takes the mean of the logits: summed
    plainly, logits near float32's largest overflowed it, and a loss beyond
    float32's range came out -inf instead of inf. Every loss is the float64
    value rounded to float32 (inf where beyond it), to within 2 roundings;
    the gradients, p - q, stay exact to float32 rounding."""
    n, vocab = 9, 130
    logits = (rng.uniform(-1, 1, (n, vocab)) * magnitude).astype(np.float32)
    targets = random_targets(rng, n, vocab)
    loss, dlogits = run(logits, targets, upstream_gradient(rng, n, "none"), label_smoothing=0.1, reduction="none")
    expected = reference.cross_entropy(logits.astype(np.float64), targets, label_smoothing=0.1, reduction="none")
    with np.errstate(over="ignore"):
        rounded = expected.astype(np.float32)
    finite = np.isfinite(rounded)
    np.testing.assert_array_equal(loss[~finite], rounded[~finite])
    np.testing.assert_allclose(loss[finite], expected[finite], rtol=2 * 2.0**-24)
    assert np.isfinite(dlogits).all()


def test_negative_infinity_logits(cpu_isa, rng):
    """Masked classes (-inf) get probability 0 and gradient 0; without label
    smoothing the loss stays finite (with it, log 0 enters the loss: inf)."""
    n, vocab = 20, 37
    logits = rng.standard_normal((n, vocab)).astype(np.float32)
    masked = rng.random((n, vocab)) < 0.5
    masked[:, 36] = True  # the tail lane too
    masked[0] = True  # one row with only its target left
    targets = random_targets(rng, n, vocab - 1)
    masked[np.arange(n), targets] = False
    logits[masked] = -np.inf
    grad = upstream_gradient(rng, n, "none")
    loss, dlogits = check(logits, targets, grad, reduction="none")
    assert np.isfinite(loss).all()
    np.testing.assert_array_equal(dlogits[masked], 0)
    assert loss[0] == 0 and dlogits[0, targets[0]] == 0
    smoothed, _ = run(logits, targets, grad, reduction="none", label_smoothing=0.1)
    np.testing.assert_array_equal(smoothed, np.inf)


def test_same_bits_for_any_thread_count(cpu_isa, rng):
    logits = rng.standard_normal((600, 300)).astype(np.float32)
    targets = random_targets(rng, 600, 300, ignored_fraction=0.1)
    assert_same_bits_at_thread_counts(
        lambda: (
            run(logits, targets, np.float32(1.0), label_smoothing=0.1)
            + run(logits, targets, np.ones(600, np.float32), reduction="none")
        ),
        (1, 2),
    )


def test_backward_allocates_only_dlogits(rng):
    """dlogits is the one [N, V] buffer backward asks for (no second temporary)."""
    n, vocab = 8, 50257
    logits = rng.standard_normal((n, vocab)).astype(np.float32)
    z = attnkit.tensor(logits, requires_grad=True)
    targets = attnkit.tensor(random_targets(rng, n, vocab))
    loss = F.cross_entropy(z, targets)
    node = loss.grad_fn
    saved_statistics = node.ctx.saved[2]
    assert saved_statistics.shape == (n, 3)  # per row: max, sum of exp(logit - max) as 2 floats
    grad = _C.array_from_numpy(np.array(1.0, np.float32), "", True)
    attnkit.empty_cpu_cache()
    before = attnkit.cpu_memory_stats()
    dlogits = _C.cross_entropy_backward(grad, z._array, targets._array, saved_statistics, -100, 0.0, "mean")
    after = attnkit.cpu_memory_stats()
    assert after["allocations"] - before["allocations"] == 1
    assert after["allocated_bytes"] - before["allocated_bytes"] < 2 * dlogits.nbytes


def test_bad_arguments(rng):
    logits = attnkit.tensor(rng.standard_normal((4, 10)).astype(np.float32))
    targets = attnkit.tensor(np.array([1, 2, 3, 4]))
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: argument 'targets' expected class indices "
        r"in \[0, 10\) or ignore_index \(-100\), got 10 at index 2",
    ):
        F.cross_entropy(logits, attnkit.tensor(np.array([1, 2, 10, 4])))
    with pytest.raises(ValueError, match=r"got -3 at index 0"):
        F.cross_entropy(logits, attnkit.tensor(np.array([-3, 2, 1, 4], np.int32)))
    with pytest.raises(ValueError, match=r"got -100 at index 1"):
        F.cross_entropy(logits, attnkit.tensor(np.array([0, -100, 1, 4])), ignore_index=-1)
    with pytest.raises(ValueError, match=r"cross_entropy: argument 'targets' expected shape \[4\]"):
        F.cross_entropy(logits, attnkit.tensor(np.array([1, 2, 3])))
    with pytest.raises(TypeError, match="cross_entropy: argument 'targets' expected int64 or int32, got float32"):
        F.cross_entropy(logits, attnkit.tensor(np.array([1.0, 2.0, 3.0, 4.0], np.float32)))
    with pytest.raises(ValueError, match=r"cross_entropy: argument 'logits' expected a 2-d array \[N, V\]"):
        F.cross_entropy(attnkit.tensor(np.ones((2, 2, 10), np.float32)), targets)
    with pytest.raises(ValueError, match=r"cross_entropy: argument 'logits' expected a 2-d array \[N, V\] with V >= 1"):
        F.cross_entropy(attnkit.tensor(np.ones((4, 0), np.float32)), targets)
    with pytest.raises(TypeError, match="cross_entropy: argument 'logits' expected float32 or bfloat16, got int64"):
        F.cross_entropy(attnkit.tensor(np.ones((4, 10), np.int64)), targets)
    with pytest.raises(
        ValueError, match="cross_entropy: argument 'reduction' expected 'none', 'mean' or 'sum', got 'avg'"
    ):
        F.cross_entropy(logits, targets, reduction="avg")
    for smoothing in (-0.1, 1.5, float("nan")):
        with pytest.raises(
            ValueError, match="cross_entropy: argument 'label_smoothing' expected a number in \\[0, 1\\]"
        ):
            F.cross_entropy(logits, targets, label_smoothing=smoothing)
    with pytest.raises(TypeError, match="cross_entropy: argument 'ignore_index' expected an int"):
        F.cross_entropy(logits, targets, ignore_index=1.5)
    with pytest.raises(TypeError, match="cross_entropy: argument 'targets' expected an attnkit.Tensor"):
        F.cross_entropy(logits, [1, 2, 3, 4])


def test_backward_checks_its_arguments(rng):
    """The backward entry point checks targets too: it writes at each target."""
    logits = attnkit.tensor(rng.standard_normal((4, 10)).astype(np.float32))._array
    good = attnkit.tensor(np.array([1, 2, 3, 4]))._array
    bad = attnkit.tensor(np.array([1, 2, 3, 99]))._array
    statistics = _C.cross_entropy_forward(logits, good, -100, 0.0, "mean")[1]
    scalar = _C.array_from_numpy(np.array(1.0, np.float32), "", True)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: argument 'targets' .* got 99 at index 3"):
        _C.cross_entropy_backward(scalar, logits, bad, statistics, -100, 0.0, "mean")
    with pytest.raises(ValueError, match=r"cross_entropy_backward: argument 'grad_output' expected shape \[4\]"):
        _C.cross_entropy_backward(scalar, logits, good, statistics, -100, 0.0, "none")
    with pytest.raises(ValueError, match=r"cross_entropy_backward: argument 'statistics' expected shape \[4, 3\]"):
        _C.cross_entropy_backward(
            scalar, logits, good, attnkit.tensor(np.ones((4,), np.float32))._array, -100, 0.0, "mean"
        )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_by_finite_differences(rng, label_smoothing, reduction):
    logits = rng.standard_normal((4, 5))
    targets = np.array([1, -100, 4, 0])
    grad = rng.standard_normal(4) if reduction == "none" else np.float64(0.8)
    analytic = reference.cross_entropy_backward(
        grad, logits, targets, label_smoothing=label_smoothing, reduction=reduction
    )
    numeric = reference.gradient_of_weighted_sum(
        lambda z: reference.cross_entropy(z, targets, label_smoothing=label_smoothing, reduction=reduction),
        logits,
        grad,
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
