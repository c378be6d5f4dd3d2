"""Elementwise ops: broadcast arithmetic and its reduced gradients, sums and
means, max/argmax, comparisons, where/masked_fill and casts."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_same_bits_at_thread_counts
from op_check import AGAINST_NAIVE, check_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C
from attnkit.ops import elementwise

OPS = ["add", "sub", "mul", "div"]
FUNCTIONS = {"add": F.add, "sub": F.sub, "mul": F.mul, "div": F.div}
NUMPY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def leaf(values):
    return attnkit.tensor(np.asarray(values, np.float32), requires_grad=True)


def operand(rng, shape, op):
    """Random float32 values; divisors kept away from 0 (|b| in [0.5, 2])."""
    values = rng.standard_normal(shape)
    if op == "div":
        values = np.sign(values + 0.5) * rng.uniform(0.5, 2.0, size=shape)
    return np.asarray(values, np.float32)  # an array, 0-d ones too


def naive_sum_float32(x, axes, keepdim=False):
    """The plain float32 computation: one running sum per output, in index order."""
    x = np.asarray(x, np.float32)
    axes = sorted({a % x.ndim for a in axes}) if x.ndim else []
    kept = [d for d in range(x.ndim) if d not in axes]
    reduced_count = int(np.prod([x.shape[d] for d in axes]))
    moved = np.transpose(x, kept + axes).reshape([x.shape[d] for d in kept] + [reduced_count])
    if moved.shape[-1] == 0:
        out = np.zeros(moved.shape[:-1], np.float32)
    else:
        out = np.cumsum(moved, axis=-1, dtype=np.float32)[..., -1]
    if keepdim:
        out = out.reshape([1 if d in axes else x.shape[d] for d in range(x.ndim)])
    return out


def naive_sum_to_shape(x, shape):
    """sum_to_shape as plain float32 running sums."""
    x = np.asarray(x, np.float32)
    lead = x.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1]
    return naive_sum_float32(x, axes).reshape(shape)


def float32_terms(grad, a, b, op):
    """The gradient terms as the kernels form them, in float32."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = {
            "add": (grad, grad),
            "sub": (grad, -grad),
            "mul": (grad * b, grad * a),
            "div": (grad / b, -(((grad / b) * a) / b)),
        }[op]
    return tuple(np.broadcast_to(t, grad.shape).astype(np.float32) for t in terms)


# ------------------------------------------------------------- references --


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a_shape, b_shape", [((2, 3), (3,)), ((3, 1), (1, 2)), ((), (2, 2))])
def test_reference_binary_backward_by_finite_differences(rng, op, a_shape, b_shape):
    a = np.array(operand(rng, a_shape, op), np.float64)
    b = np.array(operand(rng, b_shape, op), np.float64)
    upstream = rng.standard_normal(np.broadcast_shapes(a_shape, b_shape))
    check_by_finite_differences(reference.binary_backward(upstream, a, b, op), a, b, upstream, reference.binary, op)


def test_reference_where_backward_by_finite_differences(rng):
    condition = rng.random((3, 1)) < 0.5
    a, b = rng.standard_normal((1, 4)), rng.standard_normal((3, 4))
    upstream = rng.standard_normal((3, 4))
    gradients = reference.where_backward(upstream, condition, a.shape, b.shape)
    check_by_finite_differences(gradients, a, b, upstream, lambda a, b: np.where(condition, a, b))


def check_by_finite_differences(gradients, a, b, upstream, function, *arguments):
    """(d/da, d/db) of sum(upstream * function(a, b, *arguments))."""
    numeric = reference.central_differences(
        {"a": a, "b": b}, lambda: float(np.sum(upstream * function(a, b, *arguments)))
    )
    for name, gradient in zip("ab", gradients):
        np.testing.assert_allclose(gradient, numeric[name], rtol=1e-7, atol=1e-9)


def test_reference_mean_gradient_by_finite_differences(rng):
    x = rng.standard_normal((3, 4, 2))
    upstream = rng.standard_normal((4,))
    numeric = reference.gradient_of_weighted_sum(lambda v: reference.reduce_mean(v, (0, 2)), x, upstream)
    np.testing.assert_allclose(numeric, np.broadcast_to(upstream[None, :, None] / 6, x.shape), rtol=1e-7, atol=1e-9)


# -------------------------------------------------------------- arithmetic --

BROADCAST_CASES = [
    ((17,), (17,)),
    ((3, 127), (3, 127)),
    ((2, 3, 17), (2, 3, 17)),
    ((127, 17), (17,)),  # a row vector along rows
    ((17,), (127, 17)),  # the same, first operand broadcast
    ((17, 3), (17, 1)),  # a column along columns
    ((3, 17), ()),  # a 0-d tensor
    ((), (3, 17)),
    ((3, 17), (1,)),
    ((3, 1), (1, 17)),  # both broadcast
    ((2, 1, 5), (3, 1)),
    ((4, 1, 3), (2, 1)),
    ((5, 1, 1000), (1, 3, 1)),
    ((1000, 127), (127,)),  # large enough for several threads
    ((1, 1), (1,)),
    ((0, 3), (3,)),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("a_shape, b_shape", BROADCAST_CASES)
def test_binary_matches_reference(cpu_isa, rng, op, a_shape, b_shape):
    a, b = operand(rng, a_shape, op), operand(rng, b_shape, op)
    shape = np.broadcast_shapes(a_shape, b_shape)
    upstream = rng.standard_normal(shape).astype(np.float32)

    def expected(a, b, upstream):
        return reference.binary(a, b, op), *reference.binary_backward(upstream, a, b, op)

    def naive(a, b, upstream):
        terms = float32_terms(upstream, a, b, op)
        return NUMPY[op](a, b), *(naive_sum_to_shape(term, value.shape) for term, value in zip(terms, (a, b)))

    # A gradient of a broadcast operand is a sum: against the naive sum's
    # error; the others elementwise.
    scales = [None] + [None if value.shape == shape else AGAINST_NAIVE for value in (a, b)]
    out, gradients = check_op(FUNCTIONS[op], [a, b], upstream, expected, naive=naive, scales=scales)
    # One IEEE operation per element: exactly numpy's float32 result.
    np.testing.assert_array_equal(out, NUMPY[op](a, b))
    for grad, value, term in zip(gradients, (a, b), float32_terms(upstream, a, b, op)):
        if value.shape == shape:  # not broadcast: the terms themselves
            np.testing.assert_array_equal(grad, term)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scalar_first", [False, True])
@pytest.mark.parametrize("n", [1, 3, 17, 127, 1000])
def test_scalar_operand(cpu_isa, rng, op, scalar_first, n):
    a = operand(rng, (n,), op)
    scalar = 0.7  # not a float32: the op uses float32(0.7), as PyTorch does
    s = np.float32(scalar)
    x = leaf(a)
    out = FUNCTIONS[op](scalar, x) if scalar_first else FUNCTIONS[op](x, scalar)
    expected = NUMPY[op](s, a) if scalar_first else NUMPY[op](a, s)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    upstream = rng.standard_normal(n).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    g = upstream
    want32 = {
        "add": g,
        "sub": -g if scalar_first else g,
        "mul": g * s,
        "div": -(((g / a) * s) / a) if scalar_first else g / s,
    }[op]
    np.testing.assert_array_equal(x.grad.numpy(), want32)
    s64, a64, g64 = np.float64(s), a.astype(np.float64), g.astype(np.float64)
    want64 = {
        "add": g64,
        "sub": -g64 if scalar_first else g64,
        "mul": g64 * s64,
        "div": -g64 * s64 / (a64 * a64) if scalar_first else g64 / s64,
    }[op]
    assert_elementwise_close(x.grad.numpy(), want64)


def test_special_values_follow_ieee(cpu_isa):
    values = np.array([0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan, 3.4e38, 1e-45, -2.5e-39], np.float32)
    a, b = values[:, None], values[None, :]
    for op in OPS:
        out = FUNCTIONS[op](attnkit.tensor(a), attnkit.tensor(b)).numpy()
        with np.errstate(all="ignore"):
            expected = NUMPY[op](a, b)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))  # signed zeros too
    negated = F.neg(attnkit.tensor(values)).numpy()
    np.testing.assert_array_equal(np.signbit(negated[~np.isnan(values)]), ~np.signbit(values[~np.isnan(values)]))
    assert np.isnan(negated[6])


def test_neg_and_its_gradient(cpu_isa, rng):
    values = rng.standard_normal((3, 17)).astype(np.float32)
    x = leaf(values)
    out = F.neg(x)
    np.testing.assert_array_equal(out.detach().numpy(), -values)
    upstream = rng.standard_normal((3, 17)).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), -upstream)


@pytest.mark.parametrize("op", OPS)
def test_broadcast_gradient_same_for_any_thread_count(cpu_isa, rng, op):
    a, b = operand(rng, (3000, 127), op), operand(rng, (127,), op)
    upstream = attnkit.tensor(rng.standard_normal((3000, 127)).astype(np.float32))

    def broadcast_gradient():
        ta, tb = leaf(a), leaf(b)
        FUNCTIONS[op](ta, tb).backward(upstream)
        return tb.grad.numpy()

    assert_same_bits_at_thread_counts(broadcast_gradient)


def test_in_place_add_is_the_float32_sum(rng):
    target = rng.standard_normal(1000).astype(np.float32)
    source = rng.standard_normal(1000).astype(np.float32)
    array = attnkit.tensor(target)._array
    _C.add_in_place(array, attnkit.tensor(source)._array)
    np.testing.assert_array_equal(np.asarray(array), target + source)
    with pytest.raises(ValueError, match=r"add_: argument 'other' expected the shape of 'self', \[1000\], got \[3\]"):
        _C.add_in_place(array, _C.zeros([3], "float32"))
    shared = attnkit.from_numpy(np.arange(1100, dtype=np.float32))
    first, shifted = F.narrow(shared, 0, 0, 1000), F.narrow(shared, 0, 100, 1000)  # views of one buffer
    with pytest.raises(
        ValueError,
        match="add_: argument 'other' expected memory that is 'self' exactly or "
        "separate from it, got a partially overlapping array",
    ):
        _C.add_in_place(first._array, shifted._array)


def test_binary_argument_errors():
    x = attnkit.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"add: argument 'other' expected a shape that broadcasts with "
        r"'input' \[2, 3\], got \[4\]",
    ):
        F.add(x, attnkit.tensor(np.ones(4, np.float32)))
    with pytest.raises(TypeError, match="mul: argument 'other' expected float32, got int64"):
        F.mul(x, attnkit.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="sub: argument 'input' expected float32 or bfloat16, got int32"):
        F.sub(attnkit.tensor(np.ones(3, np.int32)), 1.0)
    with pytest.raises(TypeError, match="div: argument 'other' expected an attnkit.Tensor or a number, got str"):
        F.div(x, "2")
    with pytest.raises(TypeError, match="add: expected at least one attnkit.Tensor"):
        F.add(1.0, 2.0)
    with pytest.raises(TypeError, match="neg: argument 'input' expected an attnkit.Tensor, got float"):
        F.neg(1.0)
    with pytest.raises(ValueError, match=r"mul_backward: argument 'grad_output' expected the broadcast shape \[2, 3\]"):
        _C.binary_backward(_C.zeros([3], "float32"), x._array, x._array, "mul", True, True)
    with pytest.raises(ValueError, match="add_backward: argument 'op' expected 'mul' or 'div'"):
        _C.binary_backward(x._array, x._array, x._array, "add", True, True)
    with pytest.raises(ValueError, match="binary: argument 'op' expected 'add', 'sub', 'mul' or 'div', got 'pow'"):
        _C.binary(x._array, x._array, "pow")


# ---------------------------------------------------------------- reductions --

SUM_CASES = [
    ((1000,), None),
    ((3, 17), 0),
    ((3, 17), 1),
    ((3, 17), -1),
    ((3, 17), (0, 1)),
    ((2, 3, 127), (0, 2)),  # two separate groups: two passes
    ((2, 3, 127), (1,)),
    ((17, 1, 3), (1,)),  # a size-1 dim: nothing to add
    ((4, 5, 6, 7), (1, 3)),
    ((70000,), None),  # a long row: chunk sums, then their sum
    ((3, 40000), 1),
    ((300, 200), 0),  # columns in several chunks of rows
    ((5, 0, 3), 1),  # empty sums are 0
    ((5, 0, 3), (0, 2)),
    ((), None),
]


def _dims(shape, dim):
    if dim is None:
        return list(range(len(shape)))
    return [dim] if isinstance(dim, int) else list(dim)


@pytest.mark.parametrize("shape, dim", SUM_CASES)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_matches_reference(cpu_isa, rng, shape, dim, keepdim):
    # An offset makes the running sums large, where a plain float32 loop drifts.
    values = np.asarray(rng.standard_normal(shape) + 0.75, np.float32)  # 0-d: an array too
    dims = _dims(shape, dim)
    kept = [1 if d in {k % max(1, len(shape)) for k in dims} else s for d, s in enumerate(shape)]
    upstream = rng.standard_normal(reference.reduce_sum(values, dims, keepdim).shape).astype(np.float32)

    def expected(x, upstream):
        return reference.reduce_sum(x, dims, keepdim), np.broadcast_to(upstream.reshape(kept), shape)

    def naive(x, upstream):
        return naive_sum_float32(x, dims, keepdim), np.broadcast_to(upstream.reshape(kept), shape)

    _, (dx,) = check_op(F.sum, [values], upstream, expected, options={"dim": dim, "keepdim": keepdim}, naive=naive)
    np.testing.assert_array_equal(dx, np.broadcast_to(upstream.reshape(kept), shape))  # a copy: exact


@pytest.mark.parametrize(
    "shape, dim", [((1000,), None), ((3, 17), 1), ((2, 3, 127), (0, 2)), ((300, 200), 0), ((17, 1, 3), None)]
)
@pytest.mark.parametrize("keepdim", [False, True])
def test_mean_matches_reference(cpu_isa, rng, shape, dim, keepdim):
    values = np.asarray(rng.standard_normal(shape) + 0.75, np.float32)  # 0-d: an array too
    dims = _dims(shape, dim)
    count = int(np.prod([shape[d] for d in dims]))
    kept = [1 if d in dims else s for d, s in enumerate(shape)]
    upstream = rng.standard_normal(reference.reduce_mean(values, dims, keepdim).shape).astype(np.float32)

    def expected(x, upstream):
        return reference.reduce_mean(x, dims, keepdim), np.broadcast_to(upstream.reshape(kept) / count, shape)

    def naive(x, upstream):
        sums = naive_sum_float32(x, dims, keepdim) / np.float32(count)
        return sums, np.broadcast_to(upstream.reshape(kept) / np.float32(count), shape)

    _, (dx,) = check_op(F.mean, [values], upstream, expected, options={"dim": dim, "keepdim": keepdim}, naive=naive)
    # one float32 division per element: exact
    np.testing.assert_array_equal(dx, np.broadcast_to(upstream.reshape(kept) / np.float32(count), shape))


def test_mean_of_nothing_is_nan():
    out = F.mean(attnkit.tensor(np.zeros((0, 3), np.float32)), 0)
    assert out.shape == (3,) and np.isnan(out.numpy()).all()


@pytest.mark.parametrize(
    "shape, dims", [((70000,), [0]), ((3, 40000), [1]), ((300, 200), [0]), ((40, 300, 20), [0, 2]), ((2000, 33), [0])]
)
def test_sum_same_for_any_thread_count(cpu_isa, rng, shape, dims):
    values = attnkit.tensor((rng.standard_normal(shape) + 0.75).astype(np.float32))
    assert_same_bits_at_thread_counts(lambda: F.sum(values, dims).numpy())


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64])
@pytest.mark.parametrize("shape, dim", [((1000,), None), ((3, 17), 0), ((2, 3, 127), (0, 2)), ((5, 0), 1)])
def test_integer_sums_are_exact_int64(rng, dtype, shape, dim):
    if dtype is np.bool_:
        values = rng.random(shape) < 0.5
    else:
        values = rng.integers(-(2**30), 2**30, size=shape).astype(dtype)
    out = F.sum(attnkit.tensor(values), dim)
    assert out.dtype == attnkit.int64
    np.testing.assert_array_equal(out.numpy(), np.sum(values, axis=None if dim is None else dim, dtype=np.int64))


def test_reduction_errors():
    x = attnkit.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"sum: argument 'dim' expected dims in \[-2, 2\) for an input of "
        r"shape \[2, 3\], got 2",
    ):
        F.sum(x, 2)
    with pytest.raises(ValueError, match="sum: argument 'dim' expected each dim at most once, got dim -1 twice"):
        F.sum(x, (1, -1))
    with pytest.raises(TypeError, match="sum: argument 'dim' expected None, an int or a tuple of ints"):
        F.sum(x, "0")
    with pytest.raises(TypeError, match="mean: argument 'input' expected float32 or bfloat16, got int64"):
        F.mean(attnkit.tensor([1, 2]))
    with pytest.raises(
        TypeError, match="sum: argument 'input' expected float32, bfloat16, int32, int64 or bool, got float16"
    ):
        F.sum(attnkit.tensor(np.ones(3, np.float16)))
    with pytest.raises(
        ValueError,
        match=r"sum_to_shape: argument 'shape' expected a shape that broadcasts to "
        r"the input's \[2, 3\], got \[2\]",
    ):
        _C.sum_to_shape(x._array, [2])


# ----------------------------------------------------------------- max/argmax --


def test_max_and_argmax_match_reference(rng):
    values = rng.standard_normal((17, 127)).astype(np.float32)
    values[3, 5] = values[3, 90] = 9.0  # a tie: the first index wins
    values[4, :] = -np.inf
    values[5, 7] = np.nan  # NaN wins, at its first position
    values[5, 70] = np.nan
    x = attnkit.tensor(values)
    result = F.max(x, -1)
    expected_values, expected_indices = reference.max_last_dim(values)
    np.testing.assert_array_equal(result.values.numpy(), expected_values.astype(np.float32))
    np.testing.assert_array_equal(result.indices.numpy(), expected_indices)
    assert result.indices.dtype == attnkit.int64
    np.testing.assert_array_equal(F.argmax(x, 1).numpy(), expected_indices)
    # Along dim 0 (moved last first), with keepdim.
    by_column = F.max(x, 0, keepdim=True)
    column_values, column_indices = reference.max_last_dim(values.T)
    assert by_column.values.shape == (1, 127)
    np.testing.assert_array_equal(by_column.values.numpy()[0], column_values.astype(np.float32))
    np.testing.assert_array_equal(by_column.indices.numpy()[0], column_indices)
    # No dim: over everything (NaN here).
    assert np.isnan(F.max(x).item()) and F.argmax(x).item() == 5 * 127 + 7
    finite = attnkit.tensor(values[:4])
    assert F.max(finite).item() == 9.0 and F.argmax(finite).item() == 3 * 127 + 5


@pytest.mark.parametrize("shape", [(1,), (3, 1), (1000, 17), (2, 3, 1000)])
def test_max_sizes(rng, shape):
    values = rng.standard_normal(shape).astype(np.float32)
    result = F.max(attnkit.tensor(values), -1)
    np.testing.assert_array_equal(result.values.numpy(), values.max(axis=-1))
    np.testing.assert_array_equal(result.indices.numpy(), values.argmax(axis=-1))


def test_max_has_no_gradient_and_checks_arguments():
    x = attnkit.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    values, indices = F.max(x, 1)
    assert not values.requires_grad and not indices.requires_grad
    with pytest.raises(ValueError, match=r"max: argument 'dim' expected a dim in \[-2, 2\), got 2"):
        F.max(x, 2)
    with pytest.raises(
        ValueError, match=r"max: argument 'input' expected a non-empty last dimension, got shape \[2, 0\]"
    ):
        F.max(attnkit.tensor(np.ones((2, 0), np.float32)), 1)
    with pytest.raises(ValueError, match="at least one dimension when 'dim' is given"):
        F.max(attnkit.tensor(np.float32(1.0)), 0)
    with pytest.raises(TypeError, match="max: argument 'input' expected float32, got int64"):
        F.max(attnkit.tensor([1, 2]))


# ----------------------------------------------------------------- comparisons --

COMPARE = {
    "eq": (F.eq, np.equal),
    "ne": (F.ne, np.not_equal),
    "lt": (F.lt, np.less),
    "le": (F.le, np.less_equal),
    "gt": (F.gt, np.greater),
    "ge": (F.ge, np.greater_equal),
}


@pytest.mark.parametrize("op", sorted(COMPARE))
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.bool_])
def test_comparisons_match_numpy(rng, op, dtype):
    function, numpy_op = COMPARE[op]
    if dtype is np.bool_:
        a, b = rng.random((127, 17)) < 0.5, rng.random(17) < 0.5
    else:
        a, b = rng.integers(-3, 3, size=(127, 17)).astype(dtype), rng.integers(-3, 3, size=17).astype(dtype)
    if dtype is np.float32:
        a[0, :3] = [np.nan, np.inf, -0.0]
        b[:3] = [np.nan, np.inf, 0.0]
    out = function(attnkit.tensor(a), attnkit.tensor(b))
    assert out.dtype == attnkit.bool and out.shape == (127, 17)
    np.testing.assert_array_equal(out.numpy(), numpy_op(a, b))
    np.testing.assert_array_equal(function(attnkit.tensor(a), 1).numpy(), numpy_op(a, dtype(1)))


def test_comparisons_with_numbers_compare_by_value():
    ids = attnkit.tensor(np.array([1, 2, 3], np.int64))
    np.testing.assert_array_equal(F.lt(ids, 2.5).numpy(), [True, True, False])
    np.testing.assert_array_equal(F.eq(ids, 2.0).numpy(), [False, True, False])
    flags = attnkit.tensor(np.array([True, False]))
    np.testing.assert_array_equal(F.eq(flags, 1).numpy(), [True, False])
    np.testing.assert_array_equal(F.lt(flags, 2).numpy(), [True, True])
    np.testing.assert_array_equal(F.logical_not(flags).numpy(), [False, True])


def test_comparison_errors():
    x = attnkit.tensor(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="lt: argument 'other' expected the dtype of 'input', float32, got int64"):
        F.lt(x, attnkit.tensor([1, 2, 3]))
    with pytest.raises(
        ValueError, match=r"eq: argument 'other' expected a shape that broadcasts with 'input' \[3\], got \[2\]"
    ):
        F.eq(x, attnkit.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="gt: argument 'other' expected an attnkit.Tensor or a number, got list"):
        F.gt(x, [1, 2, 3])
    with pytest.raises(TypeError, match="logical_not: argument 'input' expected bool, got float32"):
        F.logical_not(x)


# -------------------------------------------------------------- where, masked --


@pytest.mark.parametrize(
    "condition_shape, a_shape, b_shape",
    [
        ((3, 17), (3, 17), (3, 17)),
        ((3, 1), (1, 17), (3, 17)),
        ((17,), (127, 17), ()),
        ((127, 1), (17,), (127, 17)),
    ],
)
def test_where_matches_reference(rng, condition_shape, a_shape, b_shape):
    condition = rng.random(condition_shape) < 0.5
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    shape = np.broadcast_shapes(condition_shape, a_shape, b_shape)
    upstream = rng.standard_normal(shape).astype(np.float32)
    broadcast_condition = np.broadcast_to(condition, shape)
    terms = (
        np.where(broadcast_condition, upstream, np.float32(0)),
        np.where(broadcast_condition, np.float32(0), upstream),
    )

    def expected(condition, a, b, upstream):
        return np.where(condition, a, b), *reference.where_backward(upstream, condition, a_shape, b_shape)

    def naive(condition, a, b, upstream):
        return np.where(condition, a, b), *(naive_sum_to_shape(term, value.shape) for term, value in zip(terms, (a, b)))

    # A gradient of a broadcast operand is a sum: against the naive sum's error.
    scales = [None] + [None if value.shape == shape else AGAINST_NAIVE for value in (a, b)]
    out, gradients = check_op(F.where, [condition, a, b], upstream, expected, naive=naive, scales=scales)
    np.testing.assert_array_equal(out, np.where(condition, a, b))  # a selection: exact
    for grad, value, term in zip(gradients, (a, b), terms):
        if value.shape == shape:
            np.testing.assert_array_equal(grad, term)


def test_where_with_numbers_and_integers(rng):
    condition = attnkit.tensor(np.array([[True, False, True]]))
    x = leaf(np.array([1.0, 2.0, 3.0], np.float32))
    out = F.where(condition, x, 0.0)
    np.testing.assert_array_equal(out.detach().numpy(), [[1.0, 0.0, 3.0]])
    out.backward(attnkit.tensor(np.ones((1, 3), np.float32)))
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        F.where(condition, -1.5, attnkit.tensor(np.zeros(3, np.float32))).numpy(), [[-1.5, 0.0, -1.5]]
    )
    ids = attnkit.tensor(np.array([5, 6, 7], np.int64))
    np.testing.assert_array_equal(F.where(condition, ids, -100).numpy(), [[5, -100, 7]])
    with pytest.raises(TypeError, match="where: argument 'condition' expected bool, got float32"):
        F.where(x, x, x)
    with pytest.raises(TypeError, match="where: argument 'other' expected the dtype of 'input', float32, got int64"):
        F.where(condition, x, ids)
    with pytest.raises(TypeError, match="both numbers"):
        F.where(condition, 1.0, 2.0)


@pytest.mark.parametrize("mask_shape", [(3, 17), (17,), (3, 1), ()])
def test_masked_fill(rng, mask_shape):
    values = rng.standard_normal((3, 17)).astype(np.float32)
    mask = rng.random(mask_shape) < 0.5
    x = leaf(values)
    out = F.masked_fill(x, attnkit.tensor(mask), float("-inf"))
    np.testing.assert_array_equal(out.detach().numpy(), np.where(mask, np.float32(-np.inf), values))
    upstream = rng.standard_normal((3, 17)).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), np.where(mask, np.float32(0), upstream))


def test_masked_fill_integers_and_errors():
    ids = attnkit.tensor(np.array([1, 2, 3], np.int64))
    mask = attnkit.tensor(np.array([False, True, False]))
    np.testing.assert_array_equal(F.masked_fill(ids, mask, -100).numpy(), [1, -100, 3])
    with pytest.raises(
        ValueError,
        match=r"masked_fill: argument 'mask' expected a shape that broadcasts to the "
        r"input's \[3\], got \[2, 3\]",
    ):
        F.masked_fill(ids, attnkit.tensor(np.zeros((2, 3), bool)), 0)
    with pytest.raises(TypeError, match="masked_fill: argument 'mask' expected bool, got int64"):
        F.masked_fill(ids, ids, 0)
    with pytest.raises(ValueError, match="masked_fill: argument 'value' expected a whole number"):
        F.masked_fill(ids, mask, 0.5)
    with pytest.raises(TypeError, match="masked_fill: argument 'value' expected a number, got str"):
        F.masked_fill(ids, mask, "0")


# ----------------------------------------------------------------------- casts --


def test_float_to_integer_casts_truncate_and_saturate():
    values = np.array(
        [0.0, -0.0, 2.9, -2.9, 0.5, -0.5, 3e9, -3e9, 1e19, -1e19, np.inf, -np.inf, np.nan, 2147483520.0, -2147483648.0],
        np.float32,
    )
    x = attnkit.tensor(values)
    for dtype, name in ((np.int32, "int32"), (np.int64, "int64")):
        out = elementwise.cast(x, name).numpy()
        np.testing.assert_array_equal(out, reference.cast_float_to_integer(values, dtype))


def test_other_casts(rng):
    ids = rng.integers(-(2**40), 2**40, size=127)
    floats = elementwise.cast(attnkit.tensor(ids), "float32").numpy()
    np.testing.assert_array_equal(floats, ids.astype(np.float32))  # rounded to nearest
    np.testing.assert_array_equal(elementwise.cast(attnkit.tensor(ids), "int32").numpy(), ids.astype(np.int32))
    mixed = np.array([0.0, -0.0, 1e-45, np.nan, -3.0], np.float32)
    np.testing.assert_array_equal(
        elementwise.cast(attnkit.tensor(mixed), "bool").numpy(), [False, False, True, True, True]
    )
    flags = np.array([True, False, True])
    for name, dtype in (("float32", np.float32), ("int32", np.int32), ("int64", np.int64)):
        np.testing.assert_array_equal(elementwise.cast(attnkit.tensor(flags), name).numpy(), flags.astype(dtype))
    with pytest.raises(
        TypeError, match="cast: expected float32, int32, int64 or bool on both sides, got float32 to float16"
    ):
        elementwise.cast(attnkit.tensor(mixed), attnkit.float16)
