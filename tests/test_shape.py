"""Data movement: reshape views, permute/transpose copies, expand, split/cat,
narrow, index_select and gather, with their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_matches_finite_differences, assert_same_bits_at_thread_counts
from op_check import check_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

DTYPES = [np.float32, np.int64, np.int32, np.float16, np.bool_]


def random_values(rng, shape, dtype):
    if dtype is np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def leaf(values):
    return attnkit.tensor(np.asarray(values, np.float32), requires_grad=True)


def shares_memory(a, b) -> bool:
    return np.shares_memory(np.asarray(a.detach()), np.asarray(b.detach()))


def test_references_by_finite_differences(rng):
    x = rng.standard_normal((3, 4))
    index = np.array([2, 0, 2])
    upstream = rng.standard_normal((3, 3))
    assert_matches_finite_differences(
        reference.index_select_backward(upstream, x.shape, 1, index),
        lambda v: reference.index_select(v, 1, index),
        x,
        upstream,
    )
    gather_index = rng.integers(0, 3, size=(2, 4))
    upstream = rng.standard_normal((2, 4))
    assert_matches_finite_differences(
        reference.gather_backward(upstream, x.shape, 0, gather_index),
        lambda v: reference.gather(v, 0, gather_index),
        x,
        upstream,
    )
    upstream = rng.standard_normal((3, 2))
    assert_matches_finite_differences(
        reference.narrow_backward(upstream, x.shape, 1, 1), lambda v: v[:, 1:3], x, upstream
    )


# ------------------------------------------------------------------ reshape --


def test_reshape_is_a_view_and_reshapes_the_gradient(rng):
    values = rng.standard_normal((3, 17)).astype(np.float32)
    x = leaf(values)
    y = F.reshape(x, 17, -1)
    assert y.shape == (17, 3) and shares_memory(x, y)
    assert F.reshape(x, (51,)).shape == (51,)
    upstream = rng.standard_normal((17, 3)).astype(np.float32)
    y.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), upstream.reshape(3, 17))
    assert F.flatten(attnkit.tensor(np.zeros((2, 3, 4), np.float32)), 1).shape == (2, 12)
    assert F.flatten(attnkit.tensor(np.zeros((2, 0, 4), np.float32))).shape == (0,)
    assert F.unsqueeze(x, -1).shape == (3, 17, 1) and F.unsqueeze(x, 0).shape == (1, 3, 17)
    assert F.squeeze(attnkit.tensor(np.zeros((1, 3, 1), np.float32))).shape == (3,)
    assert F.squeeze(attnkit.tensor(np.zeros((1, 3, 1), np.float32)), 0).shape == (3, 1)
    assert F.squeeze(attnkit.tensor(np.zeros((2, 3), np.float32)), 0).shape == (2, 3)
    with pytest.raises(
        ValueError, match=r"reshape: argument 'shape' expected 51 elements like \[3, 17\], got \[4, 13\]"
    ):
        F.reshape(x, 4, 13)
    with pytest.raises(TypeError, match="reshape: argument 'shape' expected ints"):
        F.reshape(x, 3.0, 17)


def test_zero_dimensional_tensors_take_the_dims_of_a_one_dimensional_one():
    """As in PyTorch: 0 and -1 name the one dim of a 0-d tensor; anything else
    is out of range (it used to be ignored)."""
    t0 = attnkit.tensor(2.5)
    for start, end in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert F.flatten(t0, start, end).shape == (1,)
    for dim in (None, 0, -1):
        assert F.squeeze(t0, dim).shape == ()
    assert t0.flatten().shape == (1,) and t0.squeeze(0).shape == ()
    for start, end in ((-100, 100), (1, -1), (0, 1), (-2, 0)):
        with pytest.raises(ValueError, match=r"flatten: argument 'dim' expected a dim in \[-1, 1\)"):
            F.flatten(t0, start, end)
    for dim in (1, -2, 2**40, -(2**70)):
        with pytest.raises(ValueError, match=r"squeeze: argument 'dim' expected a dim in \[-1, 1\)"):
            F.squeeze(t0, dim)


# ------------------------------------------------------------------ permute --

PERMUTE_CASES = [
    ((17,), (0,)),
    ((3, 17), (1, 0)),
    ((127, 1000), (1, 0)),  # 2-d transpose, odd sizes, several tiles per side
    ((1000, 3), (1, 0)),
    ((1, 127), (1, 0)),
    ((2, 17, 3, 33), (0, 2, 1, 3)),  # the attention head shuffle: runs of 33
    ((2, 17, 3, 33), (0, 2, 3, 1)),  # batched transposes
    ((2, 3, 4, 5), (3, 2, 1, 0)),
    ((4, 1, 5), (2, 0, 1)),
    ((65, 33, 2), (1, 0, 2)),
    ((0, 3), (1, 0)),
    ((), ()),
]


@pytest.mark.parametrize("shape, dims", PERMUTE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_permute_matches_numpy(rng, shape, dims, dtype):
    values = random_values(rng, shape, dtype)
    out = F.permute(attnkit.tensor(values), dims)
    np.testing.assert_array_equal(out.numpy(), np.transpose(values, dims))


@pytest.mark.parametrize("shape, dims", PERMUTE_CASES)
def test_permute_gradient_is_the_inverse_permute(rng, shape, dims):
    x = leaf(rng.standard_normal(shape))
    out = F.permute(x, *dims) if dims else F.permute(x, dims)
    upstream = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), np.transpose(upstream, np.argsort(dims)))


def test_transpose_copies(rng):
    values = rng.standard_normal((2, 3, 5)).astype(np.float32)
    x = attnkit.tensor(values)
    out = F.transpose(x, -1, 0)
    np.testing.assert_array_equal(out.numpy(), np.swapaxes(values, -1, 0))
    assert not shares_memory(out, x)
    with pytest.raises(ValueError, match=r"transpose: argument 'dim' expected a dim in \[-3, 3\), got 3"):
        F.transpose(x, 0, 3)
    with pytest.raises(ValueError, match="permute: argument 'dims' expected each dim exactly once, got dim 0 twice"):
        F.permute(x, 0, 0, 1)
    with pytest.raises(
        ValueError, match="permute: argument 'dims' expected a permutation of the input's 3 dims, got 2 dims"
    ):
        F.permute(x, 0, 1)


# ------------------------------------------------------------------- expand --


@pytest.mark.parametrize(
    "shape, target",
    [
        ((3,), (2, 3)),
        ((3, 1), (3, 17)),
        ((1,), (1000,)),
        ((2, 1, 3), (4, 2, 5, 3)),
        ((127, 1), (2, 127, 33)),
        ((), (3, 1)),
    ],
)
def test_expand_and_its_summed_gradient(rng, shape, target):
    values = rng.standard_normal(shape).astype(np.float32)
    upstream = rng.standard_normal(target).astype(np.float32)
    lead = len(target) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and target[lead + i] != 1)

    def expected(x, upstream):
        return np.broadcast_to(x, target), reference.sum_to_shape(upstream, shape)

    def naive(x, upstream):  # one running float32 sum per element of x
        moved = np.moveaxis(upstream, axes, range(-len(axes), 0))
        kept = [target[d] for d in range(len(target)) if d not in axes]
        return np.broadcast_to(x, target), np.cumsum(moved.reshape(kept + [-1]), axis=-1)[..., -1].reshape(shape)

    out, _ = check_op(lambda x: F.expand(x, *target), [values], upstream, expected, naive=naive)
    np.testing.assert_array_equal(out, np.broadcast_to(values, target))


def test_expand_keeps_sizes_given_as_minus_one_and_checks():
    x = attnkit.tensor(np.arange(3, dtype=np.int64).reshape(3, 1))
    np.testing.assert_array_equal(F.expand(x, 2, -1, 4).numpy(), np.broadcast_to(np.arange(3).reshape(3, 1), (2, 3, 4)))
    with pytest.raises(
        ValueError,
        match=r"expand: argument 'shape' expected a shape the input's \[3, 1\] "
        r"broadcasts to, got \[2, 4\]",
    ):
        F.expand(x, 2, 4)


# -------------------------------------------------------- split, cat, narrow --


@pytest.mark.parametrize(
    "shape, split, dim",
    [
        ((17, 3), 5, 0),
        ((17, 3), [1, 16], 0),
        ((3, 127), 50, 1),
        ((2, 3, 17), [3, 0, 14], -1),
        ((1, 1000, 3), 333, 1),
        ((4, 6), 6, 1),
        ((0, 4), 2, 1),
    ],
)
def test_split_and_cat_round_trip(rng, shape, split, dim):
    values = rng.standard_normal(shape).astype(np.float32)
    x = leaf(values)
    pieces = F.split(x, split, dim)
    axis = dim % len(shape)
    if isinstance(split, int):
        sizes = [min(split, shape[axis] - s) for s in range(0, shape[axis], split)] or [0]
    else:
        sizes = split
    expected = np.split(values, np.cumsum(sizes)[:-1], axis=axis)
    assert len(pieces) == len(expected)
    for piece, want in zip(pieces, expected):
        np.testing.assert_array_equal(piece.detach().numpy(), want)
        # Pieces along a dim that only size-1 dims precede are views.
        if piece.numel():
            assert shares_memory(piece, x) == (int(np.prod(shape[:axis])) == 1)
    # Gradients reach x through the pieces used; unused ones contribute zeros.
    upstream = [rng.standard_normal(p.shape).astype(np.float32) for p in pieces]
    total = None
    for i, (piece, g) in enumerate(zip(pieces, upstream)):
        if i % 2 == 0:
            term = F.sum(F.mul(piece, attnkit.tensor(g)))
            total = term if total is None else F.add(total, term)
    if total is not None:
        total.backward()
        want = np.concatenate([g if i % 2 == 0 else np.zeros_like(g) for i, g in enumerate(upstream)], axis=axis)
        np.testing.assert_array_equal(x.grad.numpy(), want)
    joined = F.cat(list(pieces), dim)
    np.testing.assert_array_equal(joined.detach().numpy(), values)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cat_along_each_dim(rng, dtype):
    parts = [random_values(rng, (2, n, 5), dtype) for n in (1, 3, 17)]
    out = F.cat([attnkit.tensor(p) for p in parts], 1)
    np.testing.assert_array_equal(out.numpy(), np.concatenate(parts, axis=1))
    rows = [random_values(rng, (n, 3), dtype) for n in (127, 1)]
    np.testing.assert_array_equal(F.cat([attnkit.tensor(p) for p in rows]).numpy(), np.concatenate(rows))


def test_cat_gradient_splits(rng):
    a, b = leaf(rng.standard_normal((3, 2))), leaf(rng.standard_normal((3, 5)))
    out = F.cat([a, b], -1)
    upstream = rng.standard_normal((3, 7)).astype(np.float32)
    out.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(a.grad.numpy(), upstream[:, :2])
    np.testing.assert_array_equal(b.grad.numpy(), upstream[:, 2:])


def test_stack_and_chunk(rng):
    parts = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
    tensors = [leaf(p) for p in parts]
    out = F.stack(tensors, 1)
    np.testing.assert_array_equal(out.detach().numpy(), np.stack(parts, 1))
    out.backward(attnkit.tensor(np.ones((3, 3, 4), np.float32)))
    assert all(np.array_equal(t.grad.numpy(), np.ones((3, 4), np.float32)) for t in tensors)
    assert [c.shape for c in F.chunk(attnkit.tensor(np.zeros((10, 2), np.float32)), 3)] == [(4, 2), (4, 2), (2, 2)]
    assert [c.shape for c in F.chunk(attnkit.tensor(np.zeros((2, 4), np.float32)), 3, 1)] == [(2, 2), (2, 2)]


def test_split_cat_errors():
    x = attnkit.tensor(np.zeros((4, 6), np.float32))
    with pytest.raises(
        ValueError,
        match=r"split: argument 'split_size_or_sections' expected sizes summing to 6 "
        r"\(the size of dim 1\), got sizes summing to 5",
    ):
        F.split(x, [2, 3], 1)
    with pytest.raises(ValueError, match="split: argument 'split_size_or_sections' expected a positive size, got 0"):
        F.split(x, 0)
    with pytest.raises(
        ValueError,
        match=r"cat: argument 'tensors\[1\]' expected the shape of tensors\[0\], "
        r"\[4, 6\], except along dim 0, got \[4, 5\]",
    ):
        F.cat([x, attnkit.tensor(np.zeros((4, 5), np.float32))])
    with pytest.raises(
        ValueError,
        match=r"cat: argument 'tensors\[1\]' expected the shape of tensors\[0\], "
        r"\[4, 6\], except along dim 1, got \[4\]",
    ):
        F.cat([x, attnkit.tensor(np.zeros(4, np.float32))], 1)
    with pytest.raises(
        TypeError, match=r"cat: argument 'tensors\[1\]' expected the dtype of tensors\[0\], float32, got int64"
    ):
        F.cat([x, attnkit.tensor(np.zeros((4, 6), np.int64))])
    with pytest.raises(
        TypeError, match="cat: argument 'tensors' expected a list or tuple of attnkit.Tensor, got Tensor"
    ):
        F.cat(x)
    with pytest.raises(ValueError, match="cat: argument 'tensors' expected at least one tensor"):
        F.cat([])
    with pytest.raises(ValueError, match=r"stack: argument 'tensors\[1\]' expected the shape of tensors\[0\]"):
        F.stack([x, attnkit.tensor(np.zeros((4, 5), np.float32))])


def test_narrow_views_copies_and_gradient(rng):
    values = rng.standard_normal((5, 17)).astype(np.float32)
    x = leaf(values)
    rows = F.narrow(x, 0, 1, 3)
    assert shares_memory(rows, x)
    np.testing.assert_array_equal(rows.detach().numpy(), values[1:4])
    columns = F.narrow(x, 1, -4, 4)
    assert not shares_memory(columns, x)
    np.testing.assert_array_equal(columns.detach().numpy(), values[:, 13:])
    upstream = rng.standard_normal((5, 4)).astype(np.float32)
    columns.backward(attnkit.tensor(upstream))
    np.testing.assert_array_equal(x.grad.numpy(), reference.narrow_backward(upstream, (5, 17), 1, 13))
    with pytest.raises(
        ValueError, match=r"narrow: argument 'length' expected a length in \[0, 2\] from start 3, got 3"
    ):
        F.narrow(x, 0, 3, 3)
    with pytest.raises(ValueError, match=r"narrow: argument 'start' expected a start in \[0, 17\], got 20"):
        F.narrow(x, 1, 20, 0)


# ------------------------------------------------------------ index_select --


@pytest.mark.parametrize(
    "shape, dim, count",
    [
        ((17, 3), 0, 5),
        ((3, 127), 1, 1000),
        ((2, 17, 5), 1, 3),
        ((4, 3, 17), -1, 17),
        ((1000, 1), 0, 127),
        ((5, 4), 0, 0),
    ],
)
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_index_select_matches_reference(rng, shape, dim, count, index_dtype):
    values = rng.standard_normal(shape).astype(np.float32)
    axis = dim % len(shape)
    index = rng.integers(0, shape[axis], size=count).astype(index_dtype)  # with repeats
    upstream = rng.standard_normal(reference.index_select(values, axis, index).shape).astype(np.float32)
    # Each row's additions run from 0 in index order: a serial float32 loop.
    serial = np.zeros(shape, np.float32)
    moved, source = np.moveaxis(serial, axis, 0), np.moveaxis(upstream, axis, 0)
    for j, i in enumerate(index):
        moved[i] += source[j]
    check_selection(
        lambda x: F.index_select(x, dim, attnkit.tensor(index)),
        values,
        upstream,
        lambda x: reference.index_select(x, axis, index),
        lambda upstream: reference.index_select_backward(upstream, shape, axis, index),
        serial,
    )


def check_selection(select, values, upstream, selected, gradient, serial):
    """check_op for a selection along an axis (index_select, gather):
    ``selected(x)`` and ``gradient(upstream)`` are the references. The
    forward is exact; the gradient is a scatter-add in index order, so it
    equals ``serial``, the serial float32 loop, bit for bit."""
    out, (dx,) = check_op(
        select,
        [values],
        upstream,
        lambda x, upstream: (selected(x), gradient(upstream)),
        naive=lambda x, upstream: (selected(x), serial),
    )
    np.testing.assert_array_equal(out, selected(values))
    np.testing.assert_array_equal(dx, serial)


@pytest.mark.parametrize("dtype", DTYPES)
def test_index_select_every_dtype(rng, dtype):
    values = random_values(rng, (7, 3), dtype)
    index = np.array([6, 0, 6, 2])
    np.testing.assert_array_equal(
        F.index_select(attnkit.tensor(values), 0, attnkit.tensor(index)).numpy(), values[index]
    )


def test_index_select_gradient_same_for_any_thread_count(rng):
    V, C, N = 3000, 96, 20000
    ids = attnkit.tensor(np.minimum(rng.zipf(1.3, size=N) - 1, V - 1).astype(np.int64))
    upstream = attnkit.tensor(rng.standard_normal((N, C)).astype(np.float32))
    assert_same_bits_at_thread_counts(
        lambda: np.asarray(_C.index_select_backward(upstream._array, [V, C], 0, ids._array))
    )


def test_index_select_errors():
    x = attnkit.tensor(np.zeros((10, 4), np.float32))
    with pytest.raises(
        ValueError,
        match=r"index_select: argument 'index' expected indices in \[0, 10\) "
        r"\(the size of dimension 0\), got index 10 at flat position 2",
    ):
        F.index_select(x, 0, attnkit.tensor([1, 2, 10]))
    with pytest.raises(ValueError, match="got index -1 at flat position 0"):
        F.index_select(x, 1, attnkit.tensor(np.array([-1], np.int32)))
    with pytest.raises(
        TypeError, match="index_select: argument 'index' expected an int32 or int64 tensor, got float32"
    ):
        F.index_select(x, 0, attnkit.tensor([1.0]))
    with pytest.raises(
        ValueError,
        match=r"index_select: argument 'index' expected a 0-d or 1-d array of indices, "
        r"got shape \[1, 2\]",
    ):
        F.index_select(x, 0, attnkit.tensor([[1, 2]]))
    with pytest.raises(
        ValueError, match=r"index_select_backward: argument 'grad_output' expected shape \[2, 4\], got \[3, 4\]"
    ):
        _C.index_select_backward(_C.zeros([3, 4], "float32"), [10, 4], 0, attnkit.tensor([1, 2])._array)


# ------------------------------------------------------------------ gather --


@pytest.mark.parametrize(
    "shape, dim, index_shape",
    [
        ((17, 127), -1, (17, 1)),  # one target per row, as in a loss
        ((17, 127), 1, (17, 5)),
        ((3, 17), 0, (5, 17)),
        ((3, 17), 0, (4, 2)),  # smaller than the input outside dim
        ((2, 5, 3), 1, (2, 7, 3)),
        ((2, 5, 3), 1, (1, 2, 2)),
        ((1000,), 0, (127,)),
        ((3, 4), 1, (3, 0)),
    ],
)
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_gather_matches_reference(rng, shape, dim, index_shape, index_dtype):
    values = rng.standard_normal(shape).astype(np.float32)
    axis = dim % len(shape)
    index = rng.integers(0, shape[axis], size=index_shape).astype(index_dtype)
    upstream = rng.standard_normal(index_shape).astype(np.float32)
    serial = np.zeros(shape, np.float32)  # np.add.at adds in index order, as the kernel
    np.add.at(serial, _coordinates(index, axis), upstream)
    check_selection(
        lambda x: F.gather(x, dim, attnkit.tensor(index)),
        values,
        upstream,
        lambda x: reference.gather(x, axis, index),
        lambda upstream: reference.gather_backward(upstream, shape, axis, index),
        serial,
    )


def _coordinates(index, axis):
    coordinates = list(np.indices(index.shape))
    coordinates[axis] = index
    return tuple(coordinates)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_every_dtype(rng, dtype):
    values = random_values(rng, (4, 9), dtype)
    index = rng.integers(0, 9, size=(4, 3))
    np.testing.assert_array_equal(
        F.gather(attnkit.tensor(values), 1, attnkit.tensor(index)).numpy(), np.take_along_axis(values, index, 1)
    )


def test_gather_gradient_same_for_any_thread_count(rng):
    index = attnkit.tensor(np.minimum(rng.zipf(1.3, size=(20000, 40)) - 1, 499).astype(np.int64))
    upstream = attnkit.tensor(rng.standard_normal((20000, 40)).astype(np.float32))
    assert_same_bits_at_thread_counts(
        lambda: np.asarray(_C.gather_backward(upstream._array, [500, 40], 0, index._array))
    )


def test_gather_errors():
    x = attnkit.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(
        ValueError,
        match=r"gather: argument 'index' expected indices in \[0, 4\) \(the size of "
        r"dimension 1\), got index 4 at flat position 3",
    ):
        F.gather(x, 1, attnkit.tensor([[0, 1], [2, 4]]))
    with pytest.raises(
        ValueError,
        match=r"gather: argument 'index' expected as many dimensions as the input, 2, "
        r"got shape \[2\]",
    ):
        F.gather(x, 1, attnkit.tensor([0, 1]))
    with pytest.raises(
        ValueError,
        match=r"gather: argument 'index' expected sizes at most the input's \[3, 4\] "
        r"outside dim 1, got shape \[4, 1\]",
    ):
        F.gather(x, 1, attnkit.tensor(np.zeros((4, 1), np.int64)))
    with pytest.raises(TypeError, match="gather: argument 'index' expected an int32 or int64 tensor, got bool"):
        F.gather(x, 1, attnkit.tensor(np.zeros((3, 1), bool)))
