"""F.softmax and F.log_softmax against the float64 references in reference/softmax.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_same_bits_at_thread_counts
from op_check import check_op, run_op

import attnkit
import attnkit.nn.functional as F

SIZES = [1, 3, 17, 64, 127, 1000]
OPS = {
    "softmax": (F.softmax, reference.softmax, reference.softmax_backward),
    "log_softmax": (F.log_softmax, reference.log_softmax, reference.log_softmax_backward),
}


def run(op, x, dy, scale=1.0):
    """Our forward output and input gradient for the upstream gradient dy."""
    y, (dx,) = run_op(OPS[op][0], [x], dy, scale=scale)
    return y, dx


def check(op, x, dy, scale=1.0):
    """check_op: forward and backward within twice the naive float32 error;
    infinite entries (log_softmax of -inf) must match exactly."""
    function, forward, backward = OPS[op]

    def expected(x, dy):
        y = forward(x, scale)
        return y, backward(dy, y, scale)

    y, (dx,) = check_op(function, [x], dy, expected, options={"scale": scale})
    return y, dx


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("c", SIZES)
def test_matches_reference(cpu_isa, rng, op, n, c):
    x = (3 * rng.standard_normal((n, c))).astype(np.float32)
    dy = rng.standard_normal((n, c)).astype(np.float32)
    check(op, x, dy)


@pytest.mark.parametrize("op", OPS)
def test_scale_and_leading_dimensions(cpu_isa, rng, op):
    x = rng.standard_normal((2, 3, 5, 70)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    check(op, x, dy, scale=0.125)


@pytest.mark.parametrize("op", OPS)
def test_large_logits_are_stable(cpu_isa, rng, op):
    x = rng.uniform(-1e4, 1e4, (17, 300)).astype(np.float32)
    # Rows of close large values: the row max alone does not decide the result.
    x[:5] = (1e4 + rng.standard_normal((5, 300))).astype(np.float32)
    x[5:8] = (-1e4 + rng.standard_normal((3, 300))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, dx = check(op, x, dy)
    assert np.isfinite(y).all() and np.isfinite(dx).all()


def large_scale_rows(rng, c=77):
    """Ordinary rows, rows of large logits, a tie, and masked entries."""
    x = rng.standard_normal((9, c)).astype(np.float32)
    x[2:4] += np.float32(1000)  # scale * max alone carried an error of many units
    x[4] -= np.float32(1e4)
    x[5] *= np.float32(1e30)
    x[6, :5] = x[6].max() + 1  # a five-way tie for the max
    x[7, rng.random(c) < 0.5] = -np.inf
    x[8] = np.where(rng.random(c) < 0.5, np.float32(3e38), np.float32(-3e38))
    return x


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", [1e3, 1e9])
def test_large_scales_match_the_reference(cpu_isa, rng, op, scale):
    """softmax(scale * x) with a large scale (a temperature near 0): it used to
    give NaN or a row of zeros (softmax) and -inf everywhere (log_softmax)."""
    x = large_scale_rows(rng)[:5]
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, dx = check(op, x, dy, scale=scale)
    assert np.isfinite(y).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale", [1e9, 1e30, float(np.finfo(np.float32).max)])
def test_large_scales_reach_the_limit(cpu_isa, rng, op, scale):
    """Where scale * x itself overflows float32, the result is still the limit:
    one-hot softmax (1 / k on a k-way tie) and log_softmax (x - max) * scale,
    rounded to float32 (-inf where that is beyond float32's range)."""
    x = large_scale_rows(rng)
    y = OPS[op][0](attnkit.tensor(x), scale=scale).numpy()
    x64 = x.astype(np.float64)
    m = np.max(x64, axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        exponents = (x64 - m) * scale  # exact but for the double rounding
    ties = np.sum(x64 == m, axis=-1, keepdims=True)
    if op == "softmax":
        np.testing.assert_array_equal(y, np.where(x64 == m, 1.0 / ties, 0.0).astype(np.float32))
    else:
        expected = np.where(x64 == m, -np.log(ties), exponents - np.log(ties))
        with np.errstate(over="ignore"):
            rounded = expected.astype(np.float32)
        finite = np.isfinite(rounded)
        np.testing.assert_array_equal(y[~finite], rounded[~finite])
        # (x - max) rounds once, then the product: two roundings
        np.testing.assert_allclose(y[finite], expected[finite], rtol=2 * 2.0**-24, atol=0)


@pytest.mark.parametrize("op", OPS)
def test_negative_infinity_entries(cpu_isa, rng, op):
    x = rng.standard_normal((9, 45)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = -np.inf
    x[:, 0] = rng.standard_normal(9)  # every row keeps one finite entry ...
    x[3] = -np.inf  # ... but this one: a fully masked row
    x[7, :44] = -np.inf  # only the last (tail) element is finite
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, dx = check(op, x, dy)
    assert not np.isnan(y).any() and not np.isnan(dx).any()
    if op == "softmax":
        np.testing.assert_array_equal(y[x == -np.inf], 0)
        np.testing.assert_array_equal(y[3], 0)
        np.testing.assert_array_equal(dx[3], 0)
        assert y[7, 44] == 1
    else:
        np.testing.assert_array_equal(y[x == -np.inf], -np.inf)
        assert y[7, 44] == 0
        # A fully masked row: dx = scale * (dy - exp(y) sum(dy)) = dy.
        np.testing.assert_array_equal(dx[3], dy[3])


@pytest.mark.parametrize("op", OPS)
def test_nan_spreads_over_its_row_only(cpu_isa, rng, op):
    x = rng.standard_normal((3, 40)).astype(np.float32)
    x[1, 17] = np.nan
    y = OPS[op][0](attnkit.tensor(x)).numpy()
    assert np.isnan(y[1]).all()
    assert not np.isnan(y[[0, 2]]).any()


@pytest.mark.parametrize("op", OPS)
def test_same_bits_for_any_thread_count(cpu_isa, rng, op):
    x = rng.standard_normal((1500, 100)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert_same_bits_at_thread_counts(lambda: run(op, x, dy), (1, 2))


@pytest.mark.parametrize("op", OPS)
def test_saves_only_the_output(op, rng):
    x = attnkit.tensor(rng.standard_normal((2, 8)).astype(np.float32), requires_grad=True)
    y = OPS[op][0](x)
    (saved,) = y.grad_fn.ctx.saved
    np.testing.assert_array_equal(np.asarray(saved), y.detach().numpy())


@pytest.mark.parametrize("op", OPS)
def test_bad_arguments(op):
    function = OPS[op][0]
    x = attnkit.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=f"{op}: .*'dim'.*only the last dimension"):
        function(x, dim=0)
    with pytest.raises(ValueError, match=f"{op}: .*'dim'.*got 2"):
        function(x, dim=2)
    function(x, dim=1)  # the last dimension, counted from the front
    with pytest.raises(TypeError, match=f"{op}: .*'dim'"):
        function(x, dim=None)
    for scale in (0.0, -1.0, float("inf"), float("nan"), 1e39):
        with pytest.raises(ValueError, match=f"{op}: argument 'scale' expected a finite number > 0"):
            function(x, scale=scale)
    with pytest.raises(TypeError, match=f"{op}: argument 'x' expected float32 or bfloat16, got int32"):
        function(attnkit.tensor(np.ones((2, 3), np.int32)))
    with pytest.raises(TypeError, match=f"{op}: argument 'x' expected an attnkit.Tensor"):
        function(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=f"{op}: argument 'x' expected a tensor with at least one dimension"):
        function(attnkit.from_numpy(np.array(1.0, np.float32)))


def test_empty_rows():
    y = F.softmax(attnkit.tensor(np.ones((0, 5), np.float32)))
    assert y.shape == (0, 5)
    y = F.log_softmax(attnkit.tensor(np.ones((4, 0), np.float32)))
    assert y.shape == (4, 0)


@pytest.mark.parametrize("op", OPS)
def test_reference_by_finite_differences(rng, op):
    """The reference backward is the derivative of the reference forward: for a
    fixed dy, d/dx sum(dy * forward(x)) by central differences."""
    _, forward, backward = OPS[op]
    scale = 0.7
    x = rng.standard_normal((3, 5))
    x[1, 2] = -np.inf  # a masked entry: its gradient must come out as the formula says
    dy = rng.standard_normal(x.shape)
    if op == "log_softmax":
        dy[1, 2] = 0  # its output is -inf for every x: no finite difference to take
    # -inf stays -inf when moved: its entry's difference is 0.
    numeric = reference.gradient_of_weighted_sum(
        lambda v: np.where(np.isinf(forward(v, scale)), 0, forward(v, scale)), x, dy
    )
    analytic = backward(dy, forward(x, scale), scale)
    finite = np.isfinite(x)
    np.testing.assert_allclose(analytic[finite], numeric[finite], rtol=1e-6, atol=1e-8)
