"""Activations (GELU exact and tanh, ReLU, SiLU, tanh, SwiGLU): forward and backward
against the float64 references in reference/activation.py, under each CPU ISA; the
references themselves against finite differences and independent formulas;
infinities and NaN; odd shapes; bad input."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import reference as R
from conftest import assert_same_bits_at_thread_counts
from op_check import check_op, run_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

SIZES = [0, 1, 3, 17, 1000, 10**6]
SPECIAL = np.array(
    [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 19.5, -19.5, 20.5, -20.5, 130.0, -130.0, 3e38, -3e38],
    dtype=np.float32,
)


@functools.cache
def activation_input(n):
    """n float32 values from -50 to 50: half uniform over the whole range
    (tails included), half normal with std 4, where the functions bend."""
    rng = np.random.default_rng(1000 + n)
    wide = rng.uniform(-50.0, 50.0, n)
    bending = 4.0 * rng.standard_normal(n)
    values = np.where(rng.random(n) < 0.5, wide, bending).astype(np.float32)
    values.flags.writeable = False
    return values


@functools.cache
def upstream_gradient(n):
    values = np.random.default_rng(2000 + n).standard_normal(n).astype(np.float32)
    values.flags.writeable = False
    return values


def forward_and_backward(function, values, upstream, **kwargs):
    """(y, dx) from the differentiable function through attnkit's Tensor stack."""
    y, (dx,) = run_op(function, [values], upstream, **kwargs)
    return y, dx


# --------------------------------------------------------- tolerance scales --
#
# conftest's tolerance is relative to `scale`, |expected| by default. Each
# scale below is the magnitude the result's unavoidable float32 error is
# proportional to; the comment says why.


def gelu_forward_scale(x64, expected, approximate):
    if approximate == "none":
        # The exact form is well conditioned as evaluated: the kernel takes
        # -x^2/2 exactly (two floats), so no input rounding is amplified.
        return np.abs(expected)
    # tanh form: x * sigmoid(2u), and in the negative tail sigmoid(2u) ~ exp(2u)
    # has relative condition number |2u| in u; u = sqrt(2/pi)(x + 0.044715 x^3)
    # is itself a float32 computation off by an ulp or two, which exp(2u)
    # amplifies |2u|-fold.
    return np.abs(expected) * tanh_form_amplification(x64)


def tanh_form_amplification(x64):
    """1 + |2u|, taken as 1 at x = +-inf, where the results are exact limits."""
    return 1.0 + np.abs(2.0 * R.gelu_tanh_argument(np.where(np.isinf(x64), 0.0, x64)))


def gelu_backward_scale(x64, upstream, approximate):
    # gelu' = first + second (Phi + x phi, or s + 2x u' s(1-s)) crosses zero
    # near x = -0.75, where the two terms cancel: the error is relative to
    # their magnitudes, not to the small difference.
    first, second = R.gelu_derivative_terms(x64, approximate)
    scale = np.abs(upstream) * (np.abs(first) + np.abs(second))
    if approximate == "tanh":
        scale = scale * tanh_form_amplification(x64)  # as in the forward
    return scale


def silu_backward_scale(x64, upstream):
    # silu' = s + x s (1 - s) crosses zero near x = -1.28: the terms cancel.
    first, second = R.silu_derivative_terms(x64)
    return np.abs(upstream) * (np.abs(first) + np.abs(second))


# ------------------------------------------------------------------- GELU --


def gelu_reference(x64, upstream, approximate):
    """(y, dx) of the float64 reference, and the scale of each."""
    y = R.gelu(x64, approximate)
    dx = upstream * R.gelu_derivative(x64, approximate)
    return (y, dx), (gelu_forward_scale(x64, y, approximate), gelu_backward_scale(x64, upstream, approximate))


def check_gelu(x, upstream, approximate, expected=None):
    """check_op: y and dx elementwise within the scales above. ``expected``:
    gelu_reference of these inputs, where the caller computed it once."""
    x64, upstream64 = x.astype(np.float64), upstream.astype(np.float64)
    (y, dx), scales = expected or gelu_reference(x64, upstream64, approximate)
    return check_op(F.gelu, [x], upstream, lambda *_: (y, dx), options={"approximate": approximate}, scales=scales)


@functools.cache
def gelu_expected(n, approximate):
    """gelu_reference of the size-n inputs, once per size (erfc is slow)."""
    x64 = activation_input(n).astype(np.float64)
    return gelu_reference(x64, upstream_gradient(n).astype(np.float64), approximate)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", SIZES)
def test_gelu_against_the_float64_reference(cpu_isa, n, approximate):
    check_gelu(activation_input(n), upstream_gradient(n), approximate, gelu_expected(n, approximate))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_dense_grid_over_the_bend_and_tails(cpu_isa, approximate):
    """Every 1/1024 from -20 to 20: the saturation edges, the sign change of
    gelu' and the negative tail down to where gelu underflows."""
    x = np.arange(-20 * 1024, 20 * 1024 + 1, dtype=np.float32) / 1024
    check_gelu(x, np.ones_like(x), approximate)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_infinities_and_nan(cpu_isa, approximate):
    y, (dx,) = check_gelu(SPECIAL, np.ones_like(SPECIAL), approximate)
    assert y[0] == np.inf and y[1] == 0.0 and np.isnan(y[2])  # gelu(+inf), gelu(-inf), NaN
    assert dx[0] == 1.0 and dx[1] == 0.0 and np.isnan(dx[2])  # gelu'(+inf), gelu'(-inf), NaN
    assert np.isnan(y).sum() == 1 and np.isnan(dx).sum() == 1


def test_gelu_keeps_shape_and_matches_the_flat_result(cpu_isa):
    values = activation_input(1000)[: 2 * 3 * 5 * 7].reshape(2, 3, 5, 7)
    shaped = F.gelu(attnkit.tensor(values)).numpy()
    assert shaped.shape == (2, 3, 5, 7)
    flat = F.gelu(attnkit.tensor(values.reshape(-1))).numpy()
    assert shaped.reshape(-1).tobytes() == flat.tobytes()


def test_gelu_bad_input():
    with pytest.raises(TypeError, match="gelu.*'x'.*float32.*int64"):
        F.gelu(attnkit.tensor([1, 2]))
    with pytest.raises(TypeError, match="gelu.*'x'.*float32.*float16"):
        F.gelu(attnkit.tensor([1.0], dtype=attnkit.float16))
    with pytest.raises(ValueError, match="gelu.*'approximate'.*'bogus'"):
        F.gelu(attnkit.tensor([1.0]), approximate="bogus")
    with pytest.raises(TypeError, match="gelu.*'approximate'"):
        F.gelu(attnkit.tensor([1.0]), approximate=None)
    for not_a_tensor in (np.zeros(3, np.float32), [1.0, 2.0], 1.0):
        with pytest.raises(TypeError, match="gelu.*'x'.*attnkit.Tensor"):
            F.gelu(not_a_tensor)
    x = _C.array_from_numpy(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="gelu_backward.*'grad_output'.*shape"):
        _C.gelu_backward(_C.array_from_numpy(np.zeros(3, np.float32)), x, "none")
    with pytest.raises(TypeError, match="gelu_backward.*'grad_output'.*float32"):
        _C.gelu_backward(_C.array_from_numpy(np.zeros(4, np.int32)), x, "tanh")


# ------------------------------------------------------------------- ReLU --


@pytest.mark.parametrize("n", SIZES)
def test_relu_is_exact(cpu_isa, n):
    values, upstream = activation_input(n), upstream_gradient(n)
    y, dx = forward_and_backward(F.relu, values, upstream)
    x64 = values.astype(np.float64)
    np.testing.assert_array_equal(y, R.relu(x64))
    np.testing.assert_array_equal(dx, upstream * R.relu_derivative(x64))


def test_relu_special_values(cpu_isa):
    x = attnkit.tensor(SPECIAL, requires_grad=True)
    y = F.relu(x)
    upstream = np.full_like(SPECIAL, 2.0)
    y.backward(attnkit.tensor(upstream))
    x64 = SPECIAL.astype(np.float64)
    np.testing.assert_array_equal(y.detach().numpy(), R.relu(x64))  # NaN stays NaN
    np.testing.assert_array_equal(x.grad.numpy(), upstream * R.relu_derivative(x64))
    assert x.grad.numpy()[3] == 0.0  # the gradient at 0 is 0


# ------------------------------------------------------------------- SiLU --


def check_silu(x, upstream):
    """check_op: y and dx elementwise. The forward needs no scale: the
    sigmoid comes from exp(-|x|) of the exact input, in both tails."""
    x64, upstream64 = x.astype(np.float64), upstream.astype(np.float64)

    def reference(x, upstream):
        return R.silu(x), upstream * R.silu_derivative(x)

    return check_op(F.silu, [x], upstream, reference, scales=[None, silu_backward_scale(x64, upstream64)])


@pytest.mark.parametrize("n", SIZES)
def test_silu_against_the_float64_reference(cpu_isa, n):
    check_silu(activation_input(n), upstream_gradient(n))


def test_silu_dense_grid_and_far_negative_tail(cpu_isa):
    x = np.concatenate([np.arange(-40 * 256, 40 * 256 + 1) / 256, np.linspace(-140, -40, 20001)]).astype(np.float32)
    check_silu(x, np.ones_like(x))


def test_silu_infinities_and_nan(cpu_isa):
    y, (dx,) = check_silu(SPECIAL, np.ones_like(SPECIAL))
    assert y[0] == np.inf and y[1] == 0.0 and np.isnan(y[2])
    assert dx[0] == 1.0 and dx[1] == 0.0 and np.isnan(dx[2])
    assert np.isnan(y).sum() == 1 and np.isnan(dx).sum() == 1


# ------------------------------------------------------------------- tanh --
#
# tanh is well conditioned everywhere (|x tanh'(x) / tanh(x)| <= 1) and so is
# its derivative as the kernel computes it, from the exact input (4e/(1+e)^2,
# e = exp(-2|x|), never 1 - tanh^2): both are checked relative to their own
# magnitudes, with no scale.


def check_tanh(x, upstream):
    """check_op: y and dx elementwise, relative to their own magnitudes."""

    def reference(x, upstream):
        return R.tanh(x), upstream * R.tanh_derivative(x)

    return check_op(F.tanh, [x], upstream, reference, scales=[None, None])


@pytest.mark.parametrize("n", SIZES)
def test_tanh_against_the_float64_reference(cpu_isa, n):
    check_tanh(activation_input(n), upstream_gradient(n))


def tanh_sweep():
    """Every 1/4096 over [-12, 12] (past saturation at 9.01); magnitudes
    from 1e-30 to 1 spaced 0.1% apart, both signs, where 1 - 2/(e^2x + 1)
    would cancel; every float32 within 2^12 ulps of the polynomial's limit
    0.55; the derivative's tail out to where it underflows (x ~ 52) and
    beyond."""
    grid = np.arange(-12 * 4096, 12 * 4096 + 1) / 4096
    small = np.geomspace(1e-30, 1.0, 69000)
    limit = np.float32(0.55).view(np.int32) + np.arange(-4096, 4097, dtype=np.int32)
    tail = np.linspace(8.0, 60.0, 20001)
    magnitudes = np.concatenate([small, limit.view(np.float32), tail])
    return np.concatenate([grid, magnitudes, -magnitudes]).astype(np.float32)


def test_tanh_dense_sweep_near_zero_and_tails(cpu_isa):
    x = tanh_sweep()
    check_tanh(x, np.ones_like(x))


def test_tanh_is_odd_and_its_derivative_even_bit_for_bit(cpu_isa):
    x = tanh_sweep()
    positive = x[x > 0]
    y_plus, dx_plus = forward_and_backward(F.tanh, positive, np.ones_like(positive))
    y_minus, dx_minus = forward_and_backward(F.tanh, -positive, np.ones_like(positive))
    np.testing.assert_array_equal(y_minus, -y_plus)
    np.testing.assert_array_equal(dx_minus, dx_plus)


def test_tanh_saturates_exactly(cpu_isa):
    # Past atanh(1 - 2^-25) ~ 9.01, tanh(x) rounds to 1 in float32.
    x = np.array([9.1, 20.0, 44.0, 45.0, 100.0, 3e38], np.float32)
    y, _ = forward_and_backward(F.tanh, np.concatenate([x, -x]), np.ones(2 * x.size, np.float32))
    np.testing.assert_array_equal(y, np.concatenate([np.ones_like(x), -np.ones_like(x)]))


def test_tanh_infinities_nan_and_signed_zero(cpu_isa):
    y, (dx,) = check_tanh(SPECIAL, np.ones_like(SPECIAL))
    assert y[0] == 1.0 and y[1] == -1.0 and np.isnan(y[2])  # tanh(+inf), tanh(-inf), NaN
    assert dx[0] == 0.0 and dx[1] == 0.0 and np.isnan(dx[2])
    assert np.signbit(y[4]) and y[4] == 0.0 and dx[3] == 1.0 and dx[4] == 1.0  # tanh(-0) = -0
    assert y[5] == np.float32(1e-30) and y[6] == np.float32(-1e-30)  # tanh(x) = x to float precision
    assert np.isnan(y).sum() == 1 and np.isnan(dx).sum() == 1


def test_tanh_bad_input():
    x = _C.array_from_numpy(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="tanh_backward.*'grad_output'.*shape"):
        _C.tanh_backward(_C.array_from_numpy(np.zeros(3, np.float32)), x)
    with pytest.raises(TypeError, match="tanh_backward.*'grad_output'.*float32"):
        _C.tanh_backward(_C.array_from_numpy(np.zeros(4, np.int32)), x)


# ----------------------------------------------------------------- SwiGLU --


def check_swiglu(values, upstream):
    """check_op: F.swiglu's y and dx elementwise against the reference."""
    x64, upstream64 = values.astype(np.float64), upstream.astype(np.float64)
    gate, up = np.split(x64, 2, axis=-1)
    # silu(gate) * up: a product, no cancellation; silu as in its own test.
    # The gate half of dx is upstream * up * silu'(gate), and silu' cancels
    # (see silu_backward_scale); the up half, upstream * silu(gate), does not.
    dx_scale = np.concatenate([silu_backward_scale(gate, upstream64 * up), np.abs(upstream64 * R.silu(gate))], axis=-1)

    def reference(x, upstream):
        return R.swiglu(x), R.swiglu_backward(upstream, x)

    check_op(F.swiglu, [values], upstream, reference, scales=[None, dx_scale])


@pytest.mark.parametrize(
    "rows, hidden",
    [
        (1, 1),
        (3, 1),
        (17, 3),
        (1, 17),
        (3, 17),
        (17, 1000),
        (1, 5000),  # more than one column block in a row
        (1, 1 << 17),
        (100_000, 1),
        (125, 4000),
    ],
)  # large enough for every thread
def test_swiglu_against_the_float64_reference(cpu_isa, rows, hidden):
    values = activation_input(rows * 2 * hidden).reshape(rows, 2 * hidden)
    upstream = upstream_gradient(rows * hidden).reshape(rows, hidden)
    check_swiglu(values, upstream)


@pytest.mark.parametrize("shape", [(2, 3, 34), (5, 1, 6), (4, 2)])
def test_swiglu_on_more_dimensions(cpu_isa, shape):
    n = math.prod(shape)
    values = activation_input(1000)[:n].reshape(shape)
    upstream = upstream_gradient(1000)[: n // 2].reshape(shape[:-1] + (shape[-1] // 2,))
    check_swiglu(values, upstream)


def test_swiglu_special_values(cpu_isa):
    gate = np.resize(SPECIAL, (4, SPECIAL.size))
    # |up| <= 1, so silu(3e38) * up stays finite in float32.
    up = np.stack(
        [np.ones_like(SPECIAL), -np.ones_like(SPECIAL), np.full_like(SPECIAL, 0.5), np.full_like(SPECIAL, -0.25)]
    )
    values = np.concatenate([gate, up], axis=-1)
    check_swiglu(values, np.ones((4, SPECIAL.size), np.float32))


@pytest.mark.parametrize("shape", [(0, 6), (3, 0), (0, 0), (2, 0, 4)])
def test_swiglu_empty(shape):
    y, dx = forward_and_backward(
        F.swiglu, np.zeros(shape, np.float32), np.zeros(shape[:-1] + (shape[-1] // 2,), np.float32)
    )
    assert y.shape == shape[:-1] + (shape[-1] // 2,) and dx.shape == shape


def test_swiglu_bad_shapes():
    for shape in [(3,), (2, 5), (4, 1), (2, 3, 7)]:
        with pytest.raises(ValueError, match="swiglu.*'x'.*even.*" + str(shape[-1])):
            F.swiglu(attnkit.tensor(np.zeros(shape, np.float32)))
    with pytest.raises(ValueError, match="swiglu.*'x'.*even"):
        F.swiglu(attnkit.tensor(1.0))  # 0-d: no last dimension
    x = _C.array_from_numpy(np.zeros((2, 6), np.float32))
    for wrong in [(2, 6), (2, 2), (3, 3), (6,)]:
        with pytest.raises(ValueError, match=r"swiglu_backward.*'grad_output'.*\[2, 3\]"):
            _C.swiglu_backward(_C.array_from_numpy(np.zeros(wrong, np.float32)), x)


# ---------------------------------------------------- ReLU/SiLU/SwiGLU misc --


@pytest.mark.parametrize("function", [F.relu, F.silu, F.tanh, F.swiglu])
def test_bad_input(function):
    name = function.__name__
    with pytest.raises(TypeError, match=f"{name}.*'x'.*float32.*int64"):
        function(attnkit.tensor([[1, 2]]))
    with pytest.raises(TypeError, match=f"{name}.*'x'.*float32 or bfloat16.*float16"):
        function(attnkit.tensor([[1.0, 2.0]], dtype=attnkit.float16))
    assert function(attnkit.tensor([[1.0, 2.0]], dtype=attnkit.bfloat16)).dtype == attnkit.bfloat16
    for not_a_tensor in (np.zeros((1, 2), np.float32), [[1.0, 2.0]], None):
        with pytest.raises(TypeError, match=f"{name}.*'x'.*attnkit.Tensor"):
            function(not_a_tensor)


@pytest.mark.parametrize("name", ["relu", "silu", "tanh"])
def test_elementwise_backward_checks(name):
    backward = getattr(_C, f"{name}_backward")
    x = _C.array_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=f"{name}_backward.*'grad_output'.*shape"):
        backward(_C.array_from_numpy(np.zeros((3, 2), np.float32)), x)
    with pytest.raises(TypeError, match=f"{name}_backward.*'x'.*float32"):
        backward(x, _C.array_from_numpy(np.zeros((2, 3), np.int64)))


@pytest.mark.parametrize("function", [F.relu, F.silu, F.tanh])
@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), ()])
def test_elementwise_empty_and_scalar(function, shape):
    values = np.full(shape, -0.5, np.float32)
    y, dx = forward_and_backward(function, values, np.ones(shape, np.float32))
    assert y.shape == shape and dx.shape == shape


@pytest.mark.parametrize("name", ["relu", "silu", "tanh", "swiglu"])
def test_results_do_not_depend_on_the_thread_count(cpu_isa, name):
    forward, backward = getattr(_C, f"{name}_forward"), getattr(_C, f"{name}_backward")
    x = attnkit.tensor(activation_input(10**6).reshape(500, 2000))._array
    dy_shape = (500, 1000) if name == "swiglu" else (500, 2000)
    dy = _C.array_from_numpy(np.random.default_rng(5).standard_normal(dy_shape).astype(np.float32))
    assert_same_bits_at_thread_counts(lambda: (np.asarray(forward(x)), np.asarray(backward(dy, x))), (1, 2))


# ------------------------------------------------ the references themselves --
#
# Central differences of the float64 references with step h: truncation error
# ~h^2 |f'''| / 6 and rounding error ~2e-16 |f| / h. With h = 1e-5 and
# |f| <= 10 both are below 1e-9; 1e-7 (relative to the derivative terms'
# magnitudes) leaves a wide margin and still catches any wrong formula.

FD_POINTS = np.concatenate([np.linspace(-8.0, 8.0, 161), [-0.75, -1.2785, 0.0, 1e-3, -1e-3]])
FD_STEP = 1e-5
FD_TOLERANCE = 1e-7


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_reference_derivative_by_finite_differences(approximate):
    first, second = R.gelu_derivative_terms(FD_POINTS, approximate)
    numeric = R.elementwise_derivative(lambda v: R.gelu(v, approximate), FD_POINTS, FD_STEP)
    assert np.all(np.abs(numeric - (first + second)) <= FD_TOLERANCE * (np.abs(first) + np.abs(second)))


def test_silu_reference_derivative_by_finite_differences():
    first, second = R.silu_derivative_terms(FD_POINTS)
    numeric = R.elementwise_derivative(R.silu, FD_POINTS, FD_STEP)
    assert np.all(np.abs(numeric - (first + second)) <= FD_TOLERANCE * (np.abs(first) + np.abs(second)))


def test_tanh_reference_derivative_by_finite_differences():
    # The third derivative of tanh is at most 2 in magnitude: both error
    # terms above are below 1e-10, and the bound is relative to |tanh'| + 1.
    numeric = R.elementwise_derivative(R.tanh, FD_POINTS, FD_STEP)
    analytic = R.tanh_derivative(FD_POINTS)
    assert np.all(np.abs(numeric - analytic) <= FD_TOLERANCE * (np.abs(analytic) + 1.0))


def test_relu_reference_derivative_by_finite_differences():
    away_from_zero = FD_POINTS[np.abs(FD_POINTS) > 10 * FD_STEP]  # the kink is not differentiable
    numeric = R.elementwise_derivative(R.relu, away_from_zero, FD_STEP)
    np.testing.assert_allclose(numeric, R.relu_derivative(away_from_zero), rtol=FD_TOLERANCE)


def test_swiglu_reference_backward_by_finite_differences():
    rng = np.random.default_rng(7)
    x = rng.uniform(-4, 4, (3, 10))
    upstream = rng.standard_normal((3, 5))
    analytic = R.swiglu_backward(upstream, x)
    numeric = R.gradient_of_weighted_sum(R.swiglu, x, upstream, FD_STEP)
    # Each difference is of a sum over 15 terms of at most ~16, so its
    # rounding error is ~2e-16 * 240 / h ~ 5e-9 in absolute terms: hence + 1.
    assert np.all(np.abs(numeric - analytic) <= FD_TOLERANCE * (np.abs(analytic) + 1.0))


def test_references_against_independent_formulas():
    # Where 1 + erf, 1 + tanh and 1 + exp(-x) do not cancel (x > -2), the
    # textbook forms must agree with the references to float64 rounding.
    x = np.linspace(-2.0, 30.0, 3201)
    textbook_exact = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    textbook_tanh = 0.5 * x * (1.0 + np.tanh(u))
    np.testing.assert_allclose(R.gelu(x), textbook_exact, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(R.gelu(x, "tanh"), textbook_tanh, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(R.silu(x), x / (1.0 + np.exp(-x)), rtol=1e-13)
    np.testing.assert_allclose(R.sigmoid(-x), 1.0 / (1.0 + np.exp(x)), rtol=1e-13)
    # tanh through sinh / cosh (no cancellation for |x| >= 0.1) and its
    # derivative as 1 - tanh^2 where that does not cancel (|x| <= 2).
    x_mid = np.linspace(0.1, 18.0, 1791)
    np.testing.assert_allclose(R.tanh(x_mid), np.sinh(x_mid) / np.cosh(x_mid), rtol=1e-14)
    x_near = np.linspace(-2.0, 2.0, 401)
    np.testing.assert_allclose(R.tanh_derivative(x_near), 1.0 - np.tanh(x_near) ** 2, rtol=1e-13)
    # sech(x)^2 = 4 e^-2x / (1 + e^-2x)^2 deep in the tail, and the limits.
    assert R.tanh_derivative(30.0) == pytest.approx(4.0 * math.exp(-60.0) / (1.0 + math.exp(-60.0)) ** 2, rel=1e-13)
    assert R.tanh(1e-20) == 1e-20
    np.testing.assert_array_equal(R.tanh(np.array([np.inf, -np.inf])), [1.0, -1.0])
    np.testing.assert_array_equal(R.tanh_derivative(np.array([np.inf, -np.inf, 800.0])), [0.0, 0.0, 0.0])
    # Deep in the tail: Phi(-10) and Phi(-30) from tables of the normal
    # distribution, where 1 + erf would be 0.
    assert R.normal_cdf(-10.0) == pytest.approx(7.619853024160527e-24, rel=1e-13)
    assert R.normal_cdf(-30.0) == pytest.approx(4.906713927148187e-198, rel=1e-13)
    assert R.gelu(-10.0) == pytest.approx(-7.619853024160527e-23, rel=1e-13)
    # The infinities' limits.
    limits = np.array([np.inf, -np.inf])
    np.testing.assert_array_equal(R.gelu(limits), [np.inf, 0.0])
    np.testing.assert_array_equal(R.gelu(limits, "tanh"), [np.inf, 0.0])
    np.testing.assert_array_equal(R.gelu_derivative(limits), [1.0, 0.0])
    np.testing.assert_array_equal(R.gelu_derivative(limits, "tanh"), [1.0, 0.0])
    np.testing.assert_array_equal(R.silu(limits), [np.inf, 0.0])
    np.testing.assert_array_equal(R.silu_derivative(limits), [1.0, 0.0])
    assert np.isnan(R.gelu(np.nan)) and np.isnan(R.silu_derivative(np.nan)) and np.isnan(R.relu(np.nan))
