"""F.layer_norm, F.rms_norm and F.add_layer_norm against the float64
references in reference/norm.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close, assert_same_bits_at_thread_counts
from op_check import check_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

SIZES = [1, 3, 17, 64, 127, 1000]
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def tensor(a, requires_grad=False):
    return None if a is None else attnkit.tensor(a, requires_grad=requires_grad)


def grad_of(t):
    return None if t is None else t.grad.numpy().copy()


def f64(a):
    return None if a is None else a.astype(np.float64)


def layer_norm_run(x, weight, bias, dy, eps=1e-5):
    """Our y, dx, dweight, dbias."""
    xt, wt, bt = tensor(x, True), tensor(weight, True), tensor(bias, True)
    y = F.layer_norm(xt, (x.shape[-1],), wt, bt, eps)
    y.backward(attnkit.tensor(dy))
    return y.detach().numpy().copy(), grad_of(xt), grad_of(wt), grad_of(bt)


def layer_norm_expected(x, weight, bias, dy, eps=1e-5):
    """The reference's y, dx, dweight, dbias in the dtype of the inputs."""
    y = reference.layer_norm(x, weight, bias, eps)[0]
    dx, dweight, dbias = reference.layer_norm_backward(dy, x, weight, eps)
    return y, dx, dweight if weight is not None else None, dbias if bias is not None else None


def check_layer_norm(x, weight, bias, dy, naive_x=None, eps=1e-5):
    """check_op: y and every gradient within twice the error of the naive
    float32 computation, run on naive_x (default x: an input giving the same
    results, see the mean-1e4 test). Returns y, dx, dweight, dbias (None for
    an absent weight or bias)."""

    def expected(x, normalized_shape, weight, bias, dy):
        return tuple(a for a in layer_norm_expected(x, weight, bias, dy, eps) if a is not None)

    def naive(x, normalized_shape, weight, bias, dy):
        return expected(x if naive_x is None else naive_x, normalized_shape, weight, bias, dy)

    y, gradients = check_op(
        F.layer_norm, [x, x.shape[-1], weight, bias], dy, expected, options={"eps": eps}, naive=naive
    )
    gradients = iter(gradients)
    return y, next(gradients), *(None if a is None else next(gradients) for a in (weight, bias))


def random_case(rng, shape, weight=True, bias=True):
    c = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    w = rng.standard_normal(c).astype(np.float32) if weight else None
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    dy = rng.standard_normal(shape).astype(np.float32)
    return x, w, b, dy


# ------------------------------------------------------------- LayerNorm ---


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("c", SIZES)
def test_layer_norm_matches_reference(cpu_isa, rng, n, c):
    check_layer_norm(*random_case(rng, (n, c)))


@pytest.mark.parametrize("weight, bias", [(False, False), (True, False), (False, True)])
def test_layer_norm_without_weight_or_bias(cpu_isa, rng, weight, bias):
    check_layer_norm(*random_case(rng, (2, 7, 45), weight, bias))


def test_layer_norm_statistics(cpu_isa, rng):
    x = rng.standard_normal((50, 300)).astype(np.float32) * 3 + 1
    _, mean, rstd = _C.layer_norm_forward(attnkit.tensor(x)._array, [300], None, None, 1e-5)
    _, mean_ref, rstd_ref = reference.layer_norm(f64(x))
    _, mean_naive, rstd_naive = reference.layer_norm(x)
    assert np.asarray(mean).shape == (50,) and np.asarray(rstd).shape == (50,)
    assert_reduction_close(np.asarray(mean), mean_ref, mean_naive)
    assert_reduction_close(np.asarray(rstd), rstd_ref, rstd_naive)


def test_layer_norm_mean_much_larger_than_std(cpu_isa, rng):
    """Rows of mean 1e4 and std 1e-2: float32 holds them with only ~10 steps
    per std, and the naive two-pass computation loses most of its digits.
    LayerNorm does not depend on a shift of its rows, and x - 1e4 is exact in
    float32, so the naive computation on x - 1e4 gives the error a float32
    kernel can reach: ours, on x itself, must stay within twice that."""
    x, w, b, dy = random_case(rng, (64, 300))
    x = (1e4 + 1e-2 * rng.standard_normal((64, 300))).astype(np.float32)
    x[:8] = (-1e4 + 1e-2 * rng.standard_normal((8, 300))).astype(np.float32)
    centered = x - np.where(x > 0, np.float32(1e4), np.float32(-1e4))
    np.testing.assert_array_equal(centered + np.where(x > 0, np.float32(1e4), np.float32(-1e4)), x)
    check_layer_norm(x, w, b, dy, naive_x=centered)


def test_layer_norm_constant_rows(cpu_isa, rng):
    """A constant row has x - mean = 0 exactly: y is the bias, bit for bit, and
    dx = rstd * (g - mean(g)) with rstd = 1 / sqrt(eps)."""
    c = 37
    values = np.array([0.1, -3.7, 1e4, 0.0, 1.0, 123456.7, -1e-20], np.float32)
    x = np.repeat(values[:, None], c, axis=1)
    _, w, b, dy = random_case(rng, x.shape)
    y, *_ = check_layer_norm(x, w, b, dy, naive_x=np.zeros_like(x))
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    y_plain = F.layer_norm(attnkit.tensor(x), c).numpy()
    np.testing.assert_array_equal(y_plain, 0)


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "add_layer_norm"])
def test_same_bits_for_any_thread_count(cpu_isa, rng, op):
    x, w, b, dy = random_case(rng, (2000, 96))
    residual = rng.standard_normal(x.shape).astype(np.float32)

    def run():
        xt, wt, bt, rt = tensor(x, True), tensor(w, True), tensor(b, True), tensor(residual, True)
        if op == "layer_norm":
            outputs = [F.layer_norm(xt, 96, wt, bt)]
        elif op == "rms_norm":
            outputs = [F.rms_norm(xt, 96, wt)]
        else:
            outputs = list(F.add_layer_norm(xt, rt, 96, wt, bt))
        for k, output in enumerate(outputs):
            upstream = dy if k == 0 else dy[::-1].copy()
            output.backward(attnkit.tensor(upstream), retain_graph=k + 1 < len(outputs))
        results = [o.detach().numpy().copy() for o in outputs]
        return results + [t.grad.numpy().copy() for t in (xt, wt, bt, rt) if t.grad is not None]

    assert len(run()) >= 3
    assert_same_bits_at_thread_counts(run, (1, 2))


def test_layer_norm_bad_arguments():
    x = attnkit.tensor(np.ones((4, 6), np.float32))
    w = attnkit.tensor(np.ones(6, np.float32))
    with pytest.raises(
        ValueError,
        match=r"layer_norm: argument 'normalized_shape' expected \[6\] "
        r"\(the last dimension of x; only the last dimension is "
        r"normalized\), got \[4, 6\]",
    ):
        F.layer_norm(x, (4, 6))
    with pytest.raises(ValueError, match=r"normalized_shape' expected \[6\].*got \[5\]"):
        F.layer_norm(x, 5)
    with pytest.raises(TypeError, match="layer_norm: argument 'normalized_shape' expected an int or a tuple"):
        F.layer_norm(x, "6")
    with pytest.raises(ValueError, match=r"layer_norm: argument 'weight' expected shape \[6\].*got \[5\]"):
        F.layer_norm(x, 6, attnkit.tensor(np.ones(5, np.float32)))
    with pytest.raises(ValueError, match=r"layer_norm: argument 'bias' expected shape \[6\].*got \[1, 6\]"):
        F.layer_norm(x, 6, w, attnkit.tensor(np.ones((1, 6), np.float32)))
    with pytest.raises(TypeError, match="layer_norm: argument 'weight' expected float32, got int64"):
        F.layer_norm(x, 6, attnkit.tensor(np.ones(6, np.int64)))
    with pytest.raises(TypeError, match="layer_norm: argument 'x' expected float32 or bfloat16, got int32"):
        F.layer_norm(attnkit.tensor(np.ones((4, 6), np.int32)), 6)
    with pytest.raises(TypeError, match="layer_norm: argument 'weight' expected an attnkit.Tensor"):
        F.layer_norm(x, 6, np.ones(6, np.float32))
    for eps in (-1e-5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="layer_norm: argument 'eps' expected a finite number >= 0"):
            F.layer_norm(x, 6, eps=eps)
    with pytest.raises(
        ValueError, match="layer_norm: argument 'x' expected an array whose last dimension is at least 1"
    ):
        F.layer_norm(attnkit.tensor(np.ones((4, 0), np.float32)), 0)


def test_layer_norm_backward_checks_saved_statistics():
    x = attnkit.tensor(np.ones((4, 6), np.float32))._array
    dy = attnkit.tensor(np.ones((4, 6), np.float32))._array
    good = attnkit.tensor(np.ones(4, np.float32))._array
    bad = attnkit.tensor(np.ones(3, np.float32))._array
    with pytest.raises(ValueError, match=r"layer_norm_backward: argument 'rstd' expected shape \[4\]"):
        _C.layer_norm_backward(dy, x, None, good, bad, 1e-5, False, False)
    with pytest.raises(ValueError, match="layer_norm_backward: argument 'grad_output' expected the shape of 'x'"):
        _C.layer_norm_backward(
            attnkit.tensor(np.ones((4, 5), np.float32))._array, x, None, good, good, 1e-5, False, False
        )


def test_layer_norm_reference_by_finite_differences(rng):
    x = rng.standard_normal((3, 6))
    w, b, dy = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((3, 6))

    def objective(x_, w_, b_):
        return np.sum(dy * reference.layer_norm(x_, w_, b_, eps=1e-3)[0])

    dx, dw, db = reference.layer_norm_backward(dy, x, w, eps=1e-3)
    numeric = reference.central_differences({"x": x, "w": w, "b": b}, lambda: objective(x, w, b))
    for analytic, argument in ((dx, "x"), (dw, "w"), (db, "b")):
        np.testing.assert_allclose(analytic, numeric[argument], rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------- RMSNorm ---


def rms_norm_run(x, weight, dy, eps=None):
    xt, wt = tensor(x, True), tensor(weight, True)
    y = F.rms_norm(xt, [x.shape[-1]], wt, eps)
    y.backward(attnkit.tensor(dy))
    return y.detach().numpy().copy(), grad_of(xt), grad_of(wt)


def check_rms_norm(x, weight, dy, eps=FLOAT32_EPS):
    """check_op: y, dx and dweight within twice the error of the naive
    float32 computation. Returns y, dx, dweight (None without a weight)."""

    def expected(x, normalized_shape, weight, dy):
        dx, dweight = reference.rms_norm_backward(dy, x, weight, eps)
        return (reference.rms_norm(x, weight, eps)[0], dx) + (() if weight is None else (dweight,))

    y, gradients = check_op(F.rms_norm, [x, [x.shape[-1]], weight], dy, expected, options={"eps": eps})
    return y, gradients[0], None if weight is None else gradients[1]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("c", SIZES)
def test_rms_norm_matches_reference(cpu_isa, rng, n, c):
    x, w, _, dy = random_case(rng, (n, c))
    check_rms_norm(x, w, dy)


def test_rms_norm_without_weight_and_default_eps(cpu_isa, rng):
    x, _, _, dy = random_case(rng, (3, 5, 33))
    check_rms_norm(x, None, dy)
    # eps=None is float32's machine epsilon, as in PyTorch; rows of 1e-4
    # (mean square 1e-8) are small enough for eps to show.
    x_small = np.full((1, 8), 1e-4, np.float32)
    default = F.rms_norm(attnkit.tensor(x_small), 8).numpy()
    explicit = F.rms_norm(attnkit.tensor(x_small), 8, eps=2.0**-23).numpy()
    np.testing.assert_array_equal(default, explicit)
    assert not np.array_equal(default, F.rms_norm(attnkit.tensor(x_small), 8, eps=1e-5).numpy())


def test_rms_norm_bad_arguments():
    x = attnkit.tensor(np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"rms_norm: argument 'normalized_shape' expected \[6\]"):
        F.rms_norm(x, (3,))
    with pytest.raises(ValueError, match=r"rms_norm: argument 'weight' expected shape \[6\]"):
        F.rms_norm(x, 6, attnkit.tensor(np.ones(7, np.float32)))
    with pytest.raises(ValueError, match="rms_norm: argument 'eps' expected a finite number >= 0"):
        F.rms_norm(x, 6, eps=-1.0)
    with pytest.raises(TypeError, match="rms_norm: argument 'eps' expected a float"):
        F.rms_norm(x, 6, eps="small")


def test_rms_norm_reference_by_finite_differences(rng):
    x, w, dy = rng.standard_normal((3, 6)), rng.standard_normal(6), rng.standard_normal((3, 6))

    def objective(x_, w_):
        return np.sum(dy * reference.rms_norm(x_, w_, eps=1e-3)[0])

    dx, dw = reference.rms_norm_backward(dy, x, w, eps=1e-3)
    numeric = reference.central_differences({"x": x, "w": w}, lambda: objective(x, w))
    np.testing.assert_allclose(dx, numeric["x"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric["w"], rtol=1e-6, atol=1e-8)


# ------------------------------------------------ residual add + LayerNorm ---


@pytest.mark.parametrize("n", [1, 17, 127])
@pytest.mark.parametrize("c", [1, 3, 64, 1000])
def test_add_layer_norm_matches_reference(cpu_isa, rng, n, c):
    x, w, b, dy = random_case(rng, (n, c))
    residual = rng.standard_normal(x.shape).astype(np.float32)
    dsum = rng.standard_normal(x.shape).astype(np.float32)
    xt, rt, wt, bt = tensor(x, True), tensor(residual, True), tensor(w, True), tensor(b, True)
    total, normed = F.add_layer_norm(xt, rt, c, wt, bt)
    # Both outputs get a gradient: sum feeds the next residual, normed the block.
    total.backward(attnkit.tensor(dsum), retain_graph=True)
    normed.backward(attnkit.tensor(dy))

    # sum is one float32 addition, exactly as numpy rounds it.
    s = x + residual
    np.testing.assert_array_equal(total.detach().numpy(), s)
    y_ref, dx_ref, dw_ref, db_ref = layer_norm_expected(f64(s), f64(w), f64(b), f64(dy))
    y_naive, dx_naive, dw_naive, db_naive = layer_norm_expected(s, w, b, dy)
    assert_reduction_close(normed.detach().numpy(), y_ref, y_naive)
    assert_reduction_close(xt.grad.numpy(), dx_ref + dsum, dx_naive + dsum)
    np.testing.assert_array_equal(rt.grad.numpy(), xt.grad.numpy())
    assert_reduction_close(wt.grad.numpy(), dw_ref, dw_naive)
    assert_reduction_close(bt.grad.numpy(), db_ref, db_naive)


def test_add_layer_norm_equals_the_unfused_ops(cpu_isa, rng):
    """The fused kernel and layer_norm(x + residual) give the same bits."""
    x, w, b, dy = random_case(rng, (33, 200))
    residual = rng.standard_normal(x.shape).astype(np.float32)
    total, normed = F.add_layer_norm(tensor(x), tensor(residual), 200, tensor(w), tensor(b))
    unfused = F.layer_norm(tensor(x + residual), 200, tensor(w), tensor(b))
    np.testing.assert_array_equal(total.numpy(), x + residual)
    np.testing.assert_array_equal(normed.numpy(), unfused.numpy())
    # Backward with no gradient reaching sum equals layer_norm's backward.
    ours = layer_norm_run(x + residual, w, b, dy)
    xt, rt, wt, bt = tensor(x, True), tensor(residual, True), tensor(w, True), tensor(b, True)
    F.add_layer_norm(xt, rt, 200, wt, bt)[1].backward(attnkit.tensor(dy))
    for a, e in zip((xt.grad, rt.grad, wt.grad, bt.grad), (ours[1], ours[1], ours[2], ours[3])):
        np.testing.assert_array_equal(a.numpy(), e)


def test_add_layer_norm_bad_arguments():
    x = attnkit.tensor(np.ones((4, 6), np.float32))
    with pytest.raises(
        ValueError, match=r"add_layer_norm: argument 'residual' expected the shape of 'x', \[4, 6\], got \[4, 5\]"
    ):
        F.add_layer_norm(x, attnkit.tensor(np.ones((4, 5), np.float32)), 6)
    with pytest.raises(TypeError, match="add_layer_norm: argument 'residual' expected float32"):
        F.add_layer_norm(x, attnkit.tensor(np.ones((4, 6), np.int32)), 6)
    with pytest.raises(ValueError, match=r"add_layer_norm: argument 'normalized_shape' expected \[6\]"):
        F.add_layer_norm(x, x, (2, 3))


# ------------------------------------ rows of any magnitude (scaled rows) ---
# Squares of 2e19 overflow float32 and squares of 1e-25 fall below its normal
# range: the kernels normalize each row in units of a power of two near its
# largest magnitude. LayerNorm and RMSNorm of x * 2^k with eps * 4^k are those
# of x with eps (mean and rstd scaled by 2^k and 2^-k, dx by 2^-k); with the
# scaling exact, ours must keep every bit of that.

MAGNITUDES = [2**64, 2**100, 2.0**-64, 2.0**-100]
EPS = 2.0**-16  # a power of two, so eps * 4^k is exact


def norm_outputs(op, x, w, b, dy, eps, residual=None):
    """Everything op gives: outputs, saved statistics, input and parameter gradients."""
    xt, wt = tensor(x, True), tensor(w, True)
    if op == "layer_norm":
        bt = tensor(b, True)
        y = F.layer_norm(xt, x.shape[-1], wt, bt, eps)
        stats = _C.layer_norm_forward(xt._array, [x.shape[-1]], wt._array, bt._array, eps)[1:]
        params = (wt, bt)
    elif op == "rms_norm":
        y = F.rms_norm(xt, x.shape[-1], wt, eps)
        stats = _C.rms_norm_forward(xt._array, [x.shape[-1]], wt._array, eps)[1:]
        params = (wt,)
    else:
        bt, rt = tensor(b, True), tensor(residual, True)
        y = F.add_layer_norm(xt, rt, x.shape[-1], wt, bt, eps)[1]
        stats = ()
        params = (wt, bt)
    y.backward(attnkit.tensor(dy))
    if op == "add_layer_norm":  # the same gradient reaches both addends
        np.testing.assert_array_equal(rt.grad.numpy(), xt.grad.numpy())
    return y.detach().numpy(), [np.asarray(s) for s in stats], xt.grad.numpy(), [p.grad.numpy() for p in params]


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "add_layer_norm"])
@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_rows_of_any_magnitude_give_the_bits_of_unit_rows(cpu_isa, rng, op, magnitude):
    x, w, b, dy = random_case(rng, (9, 61))
    residual = rng.standard_normal(x.shape).astype(np.float32)
    x[3] = 0.0
    x[4] = x[4, 0]  # constant rows
    x[5, ::2] = 1e-3 * x[5, ::2]  # (elements of 1e-3 scaled by 2^-100 stay normal)
    factor = np.float32(magnitude)
    # eps * factor^2 must be a float32 (eps = 0 scales to anything; then the
    # constant rows have rstd = inf and NaN gradients, alike in both runs)
    eps = EPS if 2.0**-149 <= EPS * magnitude**2 < 2.0**127 else 0.0
    y1, stats1, dx1, dp1 = norm_outputs(op, x, w, b, dy, eps, residual)
    y2, stats2, dx2, dp2 = norm_outputs(op, x * factor, w, b, dy, eps * magnitude**2, residual * factor)
    np.testing.assert_array_equal(y2, y1)
    for s1, s2, power in zip(stats1, stats2, (1, -1) if op == "layer_norm" else (-1,)):
        np.testing.assert_array_equal(s2, s1 * factor**power)
    np.testing.assert_array_equal(dx2, dx1 / factor)
    for p1, p2 in zip(dp1, dp2):
        np.testing.assert_array_equal(p2, p1)


def naive_scaled(expected_fn, x, eps, factor):
    """The plain float32 computation, run on x * factor (exact: a power of two)
    with eps * factor^2, where float32 can hold its squares; dx (which scales
    by 1 / factor) scaled back."""
    return expected_fn(x * np.float32(factor), eps * factor**2, factor)


@pytest.mark.parametrize("magnitude", [1e19, 1e30, 3e38, 1e-25, 1e-35])
def test_layer_norm_of_huge_and_tiny_rows(cpu_isa, rng, magnitude):
    """Rows whose squares overflow (or underflow) float32: within twice the
    error of the plain float32 computation run where float32 holds them."""
    x, w, b, dy = random_case(rng, (20, 77))
    x = ((rng.standard_normal(x.shape) * 0.5 + 0.25) * magnitude / 4).astype(np.float32)  # all below 2 magnitude
    x[0, :4] = np.array([2, -2, 0, 0]) * magnitude / 4  # the fuzzer's [2e19, -2e19, 0, 0]
    x[0, 4:] = 0
    eps = 1e-5 * (magnitude / 4) ** 2 if magnitude < 1 else 1e-5  # eps must matter no less than for unit rows
    eps = float(np.float32(eps))
    factor = 2.0 ** -round(np.log2(magnitude))
    ours = layer_norm_run(x, w, b, dy, eps)
    expected = layer_norm_expected(f64(x), f64(w), f64(b), f64(dy), eps)

    def naive_fn(xs, eps_s, dx_back):
        y, dx, dw, db = layer_norm_expected(xs, w, b, dy, eps_s)
        return y, dx.astype(np.float64) * dx_back, dw, db

    naive = naive_scaled(naive_fn, x, eps, factor)
    for name, a, e, n in zip(("y", "dx", "dweight", "dbias"), ours, expected, naive):
        assert np.isfinite(n).all(), name
        assert np.isfinite(a).all(), name
        assert_reduction_close(a, e, n)


@pytest.mark.parametrize("magnitude", [1e19, 1e30, 3e38, 1e-25, 1e-35])
def test_rms_norm_of_huge_and_tiny_rows(cpu_isa, rng, magnitude):
    x, w, _, dy = random_case(rng, (20, 77))
    x = ((rng.standard_normal(x.shape) * 0.5 + 0.25) * magnitude / 4).astype(np.float32)
    x[0, :4] = np.array([2, -2, 0, 0]) * magnitude / 4
    x[0, 4:] = 0
    eps = float(np.float32(1e-6 * (magnitude / 4) ** 2 if magnitude < 1 else 1e-6))
    factor = 2.0 ** -round(np.log2(magnitude))
    ours = rms_norm_run(x, w, dy, eps)
    y_ref = reference.rms_norm(f64(x), f64(w), eps)[0]
    dx_ref, dw_ref = reference.rms_norm_backward(f64(dy), f64(x), f64(w), eps)
    xs = x * np.float32(factor)
    y_naive = reference.rms_norm(xs, w, eps * factor**2)[0]
    dx_naive, dw_naive = reference.rms_norm_backward(dy, xs, w, eps * factor**2)
    dx_naive = dx_naive.astype(np.float64) * factor
    for a, e, n in zip(ours, (y_ref, dx_ref, dw_ref), (y_naive, dx_naive, dw_naive)):
        assert np.isfinite(a).all() and np.isfinite(n).all()
        assert_reduction_close(a, e, n)


@pytest.mark.parametrize("value", [3e38, -3.4e38, 1e30, 2e19, 1.5e-45, -1e-40])
def test_constant_rows_of_any_magnitude_give_the_bias(cpu_isa, rng, value):
    """A constant row has x - mean = 0: y is the bias, bit for bit, even where
    eps / s^2 overflows float32 in the scaled units; dx = rstd (g - mean(g))."""
    c = 37
    x = np.full((3, c), value, np.float32)
    _, w, b, dy = random_case(rng, x.shape)
    y, dx, dw, db = layer_norm_run(x, w, b, dy)
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
    g = f64(dy) * f64(w)
    assert_reduction_close(
        dx, (g - g.mean(axis=1, keepdims=True)) / np.sqrt(1e-5), layer_norm_expected(np.zeros_like(x), w, b, dy)[1]
    )
    np.testing.assert_array_equal(dw, 0)
    total, normed = F.add_layer_norm(attnkit.tensor(x), attnkit.tensor(np.zeros_like(x)), c, tensor(w), tensor(b))
    np.testing.assert_array_equal(normed.numpy(), np.broadcast_to(b, y.shape))
