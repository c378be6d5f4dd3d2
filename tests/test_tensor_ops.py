"""The Tensor API over the elementwise and shape ops: operators, methods,
indexing, in-place fills, factories, conversions, and gradient accumulation
through the native add."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close

import attnkit
import attnkit.nn.functional as F


def leaf(values):
    return attnkit.tensor(np.asarray(values, np.float32), requires_grad=True)


def same(a, b) -> None:
    """Bitwise-equal tensors of one shape and dtype."""
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a.detach()), np.asarray(b.detach()))


# ----------------------------------------------------------------- operators --


def test_arithmetic_operators_are_the_functional_ops(rng):
    a = attnkit.tensor(rng.standard_normal((3, 17)).astype(np.float32))
    b = attnkit.tensor(rng.uniform(0.5, 2.0, 17).astype(np.float32))
    same(a + b, F.add(a, b))
    same(a - b, F.sub(a, b))
    same(a * b, F.mul(a, b))
    same(a / b, F.div(a, b))
    same(-a, F.neg(a))
    assert +a is a
    for scalar in (2, 0.3, np.float32(1.5), np.int64(3), True):
        same(a + scalar, F.add(a, scalar))
        same(scalar + a, F.add(scalar, a))
        same(scalar - a, F.sub(scalar, a))
        same(a - scalar, F.sub(a, scalar))
        same(scalar * a, F.mul(a, scalar))
        same(a / scalar, F.div(a, scalar))
        same(scalar / b, F.div(scalar, b))
    np.testing.assert_array_equal((1 - a).numpy(), np.float32(1) - a.numpy())
    np.testing.assert_array_equal((a.numpy() * 2 + 1), (a * 2 + 1).numpy())
    same(a.add(b), a + b)
    same(a.sub(b), a - b)
    same(a.mul(b), a * b)
    same(a.div(b), a / b)
    same(a.neg(), -a)


def test_operators_refuse_other_types():
    a = attnkit.tensor(np.ones(3, np.float32))
    for other in ("2", [1.0, 2.0, 3.0], None):
        with pytest.raises(TypeError):
            a + other
        with pytest.raises(TypeError):
            other * a
    with pytest.raises(TypeError, match="add: argument 'input' expected float32 or bfloat16, got int64"):
        attnkit.tensor([1, 2]) + 1


def test_matmul_operator(rng):
    a = attnkit.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    b = attnkit.tensor(rng.standard_normal((5, 2)).astype(np.float32))
    same(a @ b, F.matmul(a, b))
    same(a.matmul(b), F.matmul(a, b))
    with pytest.raises(TypeError):
        a @ np.ones((5, 2), np.float32).tolist()


def test_in_place_operators_rebind_to_a_new_tensor():
    a = attnkit.tensor(np.ones(3, np.float32))
    original = a
    a += 1
    a *= 3
    np.testing.assert_array_equal(a.numpy(), [6.0, 6.0, 6.0])
    np.testing.assert_array_equal(original.numpy(), [1.0, 1.0, 1.0])


def test_comparison_operators(rng):
    a = attnkit.tensor(rng.integers(-2, 2, size=(4, 5)).astype(np.float32))
    b = attnkit.tensor(rng.integers(-2, 2, size=5).astype(np.float32))
    for result, expected in (
        ((a == b), a.numpy() == b.numpy()),
        ((a != b), a.numpy() != b.numpy()),
        ((a < b), a.numpy() < b.numpy()),
        ((a <= 0), a.numpy() <= 0),
        ((a > b), a.numpy() > b.numpy()),
        ((0 >= a), a.numpy() <= 0),
    ):
        assert result.dtype == attnkit.bool
        np.testing.assert_array_equal(result.numpy(), expected)
    same(a.eq(b), a == b)
    same(a.ne(b), a != b)
    same(a.lt(b), a < b)
    same(a.le(b), a <= b)
    same(a.gt(b), a > b)
    same(a.ge(b), a >= b)
    np.testing.assert_array_equal((~(a > 0)).numpy(), ~(a.numpy() > 0))
    assert (a == None) is False and (a != "x") is True  # noqa: E711  (no tensor: Python's fallback)


def test_tensors_hash_by_identity_and_convert_to_bool():
    a, b = attnkit.tensor([1.0]), attnkit.tensor([1.0])
    assert len({a, b, a}) == 2 and a in [b, a]
    assert bool(attnkit.tensor([2.0])) and not bool(attnkit.tensor([0]))
    assert float(attnkit.tensor([[2.5]])) == 2.5
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(attnkit.tensor([1.0, 2.0]))


def test_operator_gradients_reach_every_leaf(rng):
    """A small expression against its float64 gradient, derived by hand:
    y = sum(((a * b + a) / (b + 3) - a.mean(0)) * w)."""
    a_values = rng.standard_normal((3, 4)).astype(np.float32)
    b_values = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    w_values = rng.standard_normal((3, 4)).astype(np.float32)
    a, b = leaf(a_values), leaf(b_values)
    y = (((a * b + a) / (b + 3) - a.mean(0)) * attnkit.tensor(w_values)).sum()
    y.backward()
    a64, b64, w64 = (v.astype(np.float64) for v in (a_values, b_values, w_values))
    grad_a = w64 * (b64 + 1) / (b64 + 3) - w64.sum(0) / 3
    grad_b = (w64 * a64 * 2 / (b64 + 3) ** 2).sum(0)  # d/db (b + 1)/(b + 3) = 2/(b + 3)^2
    # Each is a short chain of float32 operations and sums of at most 3
    # terms: 8 ulp of the terms' magnitudes bounds it.
    assert_elementwise_close(a.grad.numpy(), grad_a, scale=np.abs(w64 * (b64 + 1) / (b64 + 3)) + np.abs(w64).sum(0) / 3)
    assert_elementwise_close(b.grad.numpy(), grad_b, scale=(np.abs(w64 * a64) * 2 / (b64 + 3) ** 2).sum(0))


def test_gradients_of_a_tensor_used_several_times_add_natively(rng):
    values = rng.standard_normal(17).astype(np.float32)
    x = leaf(values)
    (x * 2 + x * 3 + x).backward(attnkit.tensor(np.ones(17, np.float32)))
    # Three exact gradients (2, 3, 1) summed in float32: exactly 6.
    np.testing.assert_array_equal(x.grad.numpy(), np.full(17, 6.0, np.float32))
    first = x.grad.numpy().copy()
    (x * 0.1).backward(attnkit.tensor(np.ones(17, np.float32)))
    np.testing.assert_array_equal(x.grad.numpy(), first + np.float32(0.1))  # the leaf's += is a float32 add
    # An intermediate result used twice: its two gradients are summed (natively) before it runs.
    x.grad = None
    y = x * 0.5
    upstream = rng.standard_normal(17).astype(np.float32)
    (y * 3 + y * 0.1).backward(attnkit.tensor(upstream))
    summed = upstream * np.float32(3) + upstream * np.float32(0.1)
    np.testing.assert_array_equal(x.grad.numpy(), summed * np.float32(0.5))


# ------------------------------------------------------------------ indexing --


def test_getitem_ints_slices_and_ellipsis(rng):
    values = rng.standard_normal((4, 5, 6)).astype(np.float32)
    x = attnkit.tensor(values)
    for key in (
        0,
        -1,
        slice(1, 3),
        (slice(None), -1),
        (2, slice(1, 4)),
        (Ellipsis, 2),
        (1, Ellipsis, slice(0, 2)),
        (slice(None), slice(None), 5),
        (3, 4, 5),
        slice(2, 100),
        slice(3, 1),
        np.int64(2),
        (slice(-2, None), 0),
    ):
        np.testing.assert_array_equal(x[key].numpy(), values[key], err_msg=f"key {key!r}")
    assert np.shares_memory(x[1].numpy(), x.numpy())  # leading-dim parts are views
    assert np.shares_memory(x[1, 2:4].numpy(), x.numpy())
    assert not np.shares_memory(x[:, -1].numpy(), x.numpy())  # others copy
    assert [row.shape for row in x] == [(5, 6)] * 4  # iteration stops at IndexError


def test_getitem_with_ids(rng):
    weight_values = rng.standard_normal((10, 3)).astype(np.float32)
    ids = rng.integers(0, 10, size=(2, 7))
    weight = leaf(weight_values)
    out = weight[attnkit.tensor(ids)]
    assert out.shape == (2, 7, 3)
    np.testing.assert_array_equal(out.detach().numpy(), weight_values[ids])
    upstream = rng.standard_normal((2, 7, 3)).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    serial = np.zeros((10, 3), np.float32)
    np.add.at(serial, ids.reshape(-1), upstream.reshape(-1, 3))
    np.testing.assert_array_equal(weight.grad.numpy(), serial)
    np.testing.assert_array_equal(attnkit.tensor(weight_values)[[3, 3, 0]].numpy(), weight_values[[3, 3, 0]])
    np.testing.assert_array_equal(attnkit.tensor(weight_values)[attnkit.tensor(np.int32(4))].numpy(), weight_values[4])


def test_getitem_gradients(rng):
    values = rng.standard_normal((4, 5, 6)).astype(np.float32)
    for key in ((slice(None), -1), (1, slice(2, 4)), (Ellipsis, 0)):
        x = leaf(values)
        out = x[key]
        upstream = rng.standard_normal(out.shape).astype(np.float32)
        out.backward(attnkit.tensor(upstream))
        expected = np.zeros_like(values)
        expected[key] = upstream
        np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_getitem_errors():
    x = attnkit.tensor(np.zeros((4, 5), np.float32))
    with pytest.raises(IndexError, match="index 4 is out of range for dimension 0 of size 4"):
        x[4]
    with pytest.raises(IndexError, match="index -6 is out of range for dimension 1 of size 5"):
        x[:, -6]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(ValueError, match="only step-1 slices are supported"):
        x[::2]
    with pytest.raises(TypeError, match="a tensor index must hold int32 or int64 ids, got bool"):
        x[x > 0]
    with pytest.raises(ValueError, match=r"index_select: argument 'index' expected indices in \[0, 4\)"):
        x[attnkit.tensor([0, 7])]
    with pytest.raises(TypeError, match="expected ints, step-1 slices"):
        x[None]
    with pytest.raises(IndexError, match="only one ellipsis"):
        x[..., ...]


# ------------------------------------------------------------ shape methods --


def test_shape_methods(rng):
    values = rng.standard_normal((2, 3, 4)).astype(np.float32)
    x = attnkit.tensor(values)
    assert x.contiguous() is x
    same(x.view(6, 4), F.reshape(x, 6, 4))
    same(x.reshape(-1), F.reshape(x, -1))
    same(x.flatten(), F.flatten(x))
    same(x.unsqueeze(1), F.unsqueeze(x, 1))
    same(x.unsqueeze(0).squeeze(0), x)
    same(x.transpose(0, 2), F.transpose(x, 0, 2))
    same(x.permute(2, 0, 1), F.permute(x, 2, 0, 1))
    same(x.expand(5, 2, 3, 4), F.expand(x, 5, 2, 3, 4))
    assert [p.shape for p in x.split(2, 2)] == [(2, 3, 2), (2, 3, 2)]
    assert [p.shape for p in x.chunk(3, 1)] == [(2, 1, 4)] * 3
    same(x.narrow(1, 1, 2), F.narrow(x, 1, 1, 2))
    same(x.clone(), x)
    assert not np.shares_memory(x.clone().numpy(), x.numpy())
    matrix = attnkit.tensor(values[0])
    np.testing.assert_array_equal(matrix.T.numpy(), values[0].T)
    row = attnkit.tensor(values[0, 0])
    assert row.T is row
    with pytest.raises(ValueError, match="T: expected at most 2 dimensions"):
        x.T
    ids = attnkit.tensor([[2], [0]])
    same(matrix.gather(1, ids), F.gather(matrix, 1, ids))
    same(matrix.index_select(1, attnkit.tensor([3, 1])), F.index_select(matrix, 1, attnkit.tensor([3, 1])))
    mask = attnkit.tensor(np.array([True, False, True, False]))
    same(matrix.masked_fill(mask, 0.0), F.masked_fill(matrix, mask, 0.0))


def test_reduction_methods(rng):
    values = rng.standard_normal((3, 17)).astype(np.float32)
    x = attnkit.tensor(values)
    same(x.sum(), F.sum(x))
    same(x.sum(1, keepdim=True), F.sum(x, 1, True))
    same(x.mean((0, 1)), F.mean(x, (0, 1)))
    same(x.max(), F.max(x))
    values_1, indices_1 = x.max(1)
    same(values_1, F.max(x, 1).values)
    same(x.argmax(-1), indices_1)
    assert x.sum().item() == F.sum(x).item() and isinstance(x.sum().item(), float)


# ------------------------------------------------------------------ in place --


def test_zero_and_fill_in_place():
    x = attnkit.tensor(np.arange(6, dtype=np.float32))
    assert x.zero_() is x
    np.testing.assert_array_equal(x.numpy(), np.zeros(6, np.float32))
    x.fill_(2.5)
    np.testing.assert_array_equal(x.numpy(), np.full(6, 2.5, np.float32))
    ids = attnkit.tensor(np.arange(4, dtype=np.int64)).fill_(2**53 + 1)  # integers are not rounded through double
    assert ids.numpy()[0] == 2**53 + 1
    half = attnkit.tensor(np.ones(3, np.float16)).zero_()
    np.testing.assert_array_equal(half.numpy(), np.zeros(3, np.float16))
    p = attnkit.tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="zero_: a tensor that requires grad cannot be changed in place"):
        p.zero_()
    with attnkit.no_grad():
        p.fill_(4.0)
    np.testing.assert_array_equal(p.detach().numpy(), [4.0, 4.0, 4.0])
    with pytest.raises(TypeError, match="fill_: argument 'value' expected a number, got str"):
        x.fill_("1")
    with pytest.raises(ValueError, match="fill_: argument 'value' expected a whole number"):
        ids.fill_(0.5)
    with pytest.raises(
        ValueError, match="fill_: argument 'value' expected an integer in the int64 range, got 2361183241434822606848"
    ):
        ids.fill_(2**71)


# ----------------------------------------------------------------- factories --


def test_factories():
    z = attnkit.zeros(2, 3)
    assert z.dtype == attnkit.float32 and z.shape == (2, 3) and not z.numpy().any()
    same(attnkit.zeros((2, 3)), z)
    np.testing.assert_array_equal(attnkit.ones(4, dtype=attnkit.int32).numpy(), np.ones(4, np.int32))
    assert attnkit.empty(0, 5).shape == (0, 5)
    assert attnkit.zeros(3, requires_grad=True).requires_grad
    full = attnkit.full((2, 2), 7)
    assert full.dtype == attnkit.int64 and (full.numpy() == 7).all()
    assert attnkit.full((3,), True).dtype == attnkit.bool
    assert attnkit.full([2], 0.5).dtype == attnkit.float32
    np.testing.assert_array_equal(attnkit.full((2,), 1.5, dtype=attnkit.bfloat16).float().numpy(), [1.5, 1.5])
    np.testing.assert_array_equal(attnkit.zeros(2, dtype=attnkit.float16).numpy(), np.zeros(2, np.float16))
    with pytest.raises(ValueError, match=r"zeros: argument 'size' expected sizes in \[0, 2\*\*63\)"):
        attnkit.zeros(-1)
    with pytest.raises(TypeError, match="ones: argument 'size' expected ints"):
        attnkit.ones(2.0)


def test_arange():
    same(attnkit.arange(5), attnkit.tensor(np.arange(5)))
    np.testing.assert_array_equal(attnkit.arange(2, 11, 3).numpy(), [2, 5, 8])
    np.testing.assert_array_equal(attnkit.arange(5, 0, -2).numpy(), [5, 3, 1])
    assert attnkit.arange(3, 3).shape == (0,)
    values = attnkit.arange(0, 1, 0.1)
    assert values.dtype == attnkit.float32 and values.shape == (10,)
    np.testing.assert_array_equal(values.numpy(), (np.arange(10) * 0.1).astype(np.float32))
    assert attnkit.arange(4, dtype=attnkit.int32).dtype == attnkit.int32
    np.testing.assert_array_equal(attnkit.arange(3, dtype=attnkit.float32).numpy(), [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="arange: argument 'step' must not be 0"):
        attnkit.arange(0, 3, 0)
    with pytest.raises(ValueError, match="arange: argument 'end' expected a range whose values fit int32"):
        attnkit.arange(2**31 - 2, 2**31 + 1, dtype=attnkit.int32)
    with pytest.raises(TypeError, match="arange: dtype int64 needs int start, end and step"):
        attnkit.arange(0.5, 3, dtype=attnkit.int64)


# ---------------------------------------------------------------- conversions --


def test_conversions():
    x = attnkit.tensor(np.array([1.7, -2.2, 0.0], np.float32))
    assert x.float() is x
    np.testing.assert_array_equal(x.long().numpy(), [1, -2, 0])
    assert x.long().dtype == attnkit.int64 and x.int().dtype == attnkit.int32
    np.testing.assert_array_equal(x.bool().numpy(), [True, True, False])
    np.testing.assert_array_equal(x.to(attnkit.int64).numpy(), reference.cast_float_to_integer(x.numpy(), np.int64))
    flags = attnkit.tensor(np.array([True, False]))
    np.testing.assert_array_equal(flags.float().numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(flags.long().numpy(), [1, 0])
    accuracy = (attnkit.tensor([1, 2, 3]) == attnkit.tensor([1, 5, 3])).float().mean()
    assert accuracy.item() == float(np.float32(2) / np.float32(3))
    assert attnkit.tensor(np.float32(2.5)).item() == 2.5 and attnkit.tensor([7]).item() == 7
    np.testing.assert_array_equal(x.to(attnkit.float16).numpy(), x.numpy().astype(np.float16))
