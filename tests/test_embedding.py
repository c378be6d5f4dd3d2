"""Embedding lookup and its deterministic scatter-add backward."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_matches_finite_differences, assert_same_bits_at_thread_counts
from op_check import check_op, run_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C


def as_tensor(values):
    # attnkit.tensor turns 0-d data into shape (1,); from_numpy keeps it 0-d.
    return attnkit.from_numpy(np.array(values))


def serial_float32_scatter_add(dout, ids, num_embeddings):
    """The naive float32 computation: one float32 add per position, in order."""
    dweight = np.zeros((num_embeddings, dout.shape[-1]), np.float32)
    np.add.at(dweight, ids.reshape(-1), dout.reshape(ids.size, -1))
    return dweight


def check_embedding(ids, weight, dout, padding_idx=None):
    """check_op: out and dweight against the reference, the naive
    computation a float32 gather and the serial scatter-add. Returns (out,
    dweight); no gradient reaches the padding row."""
    V = weight.shape[0]

    def computation(scatter_add):
        def out_and_dweight(ids, weight, dout):
            dweight = scatter_add(dout, ids, V)
            if padding_idx is not None:
                dweight[padding_idx] = 0.0
            return reference.embedding(ids, weight), dweight

        return out_and_dweight

    options = {} if padding_idx is None else {"padding_idx": padding_idx}
    naive = computation(serial_float32_scatter_add)
    out, (dweight,) = check_op(
        F.embedding, [ids, weight], dout, computation(reference.embedding_backward), options=options, naive=naive
    )
    return out, dweight


CASES = [  # (ids shape, V, C)
    ((), 5, 3),
    ((1,), 1, 1),
    ((3,), 2, 17),
    ((17,), 1000, 3),
    ((4, 127), 50, 64),
    ((2, 5, 7), 11, 1),
    ((1000,), 3, 127),  # every id repeated hundreds of times
    ((8, 256), 512, 80),  # large enough to run on several threads
]


@pytest.mark.parametrize("shape, V, C", CASES)
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_embedding_matches_reference(rng, shape, V, C, index_dtype):
    ids = rng.integers(0, V, size=shape).astype(index_dtype)
    weight = rng.standard_normal((V, C)).astype(np.float32)
    dout = rng.standard_normal(shape + (C,)).astype(np.float32)
    out, dweight = check_embedding(ids, weight, dout)
    np.testing.assert_array_equal(out, reference.embedding(ids, weight))  # a gather is exact
    # Each row is summed from 0 in position order, exactly as the serial loop.
    np.testing.assert_array_equal(dweight, serial_float32_scatter_add(dout, ids, V))


def test_reference_backward_by_finite_differences(rng):
    ids = rng.integers(0, 5, size=(2, 4))
    weight = rng.standard_normal((5, 3))
    dout = rng.standard_normal((2, 4, 3))
    assert_matches_finite_differences(
        reference.embedding_backward(dout, ids, 5), lambda w: reference.embedding(ids, w), weight, dout
    )


def test_backward_same_for_any_thread_count(rng):
    # Zipf-like ids: a few rows collect most positions, as with real tokens.
    V, C, N = 3000, 96, 20000
    ids = attnkit.tensor(np.minimum(rng.zipf(1.3, size=N) - 1, V - 1).astype(np.int64))
    dout = attnkit.tensor(rng.standard_normal((N, C)).astype(np.float32))
    assert_same_bits_at_thread_counts(lambda: np.asarray(_C.embedding_backward(dout._array, ids._array, V)), (1, 2))


def test_empty_input(rng):
    weight = rng.standard_normal((4, 3)).astype(np.float32)
    out, (_, dweight) = run_op(F.embedding, [np.zeros((0, 2), np.int64), weight], np.zeros((0, 2, 3), np.float32))
    assert out.shape == (0, 2, 3)
    np.testing.assert_array_equal(dweight, np.zeros((4, 3), np.float32))


def test_out_of_range_ids_name_the_id(rng):
    weight = attnkit.tensor(rng.standard_normal((10, 4)).astype(np.float32))
    with pytest.raises(
        ValueError,
        match=r"embedding: argument 'input' expected token ids in \[0, 10\), "
        r"got id 10 at flat position 4",
    ):
        F.embedding(attnkit.tensor(np.array([[1, 2], [3, 4], [10, 0]], np.int32)), weight)
    with pytest.raises(ValueError, match="got id -1 at flat position 0"):
        F.embedding(attnkit.tensor([-1, 3]), weight)
    with pytest.raises(ValueError, match=r"got id 9223372036854775807"):
        F.embedding(attnkit.tensor([2**63 - 1]), weight)
    with pytest.raises(ValueError, match=r"embedding_backward: argument 'input' expected token ids in \[0, 3\)"):
        _C.embedding_backward(_C.zeros([2, 4], "float32"), attnkit.tensor([0, 7])._array, 3)


@pytest.mark.parametrize("padding_idx, row", [(0, 0), (3, 3), (-1, 6), (-7, 0)])
def test_padding_idx_row_gets_no_gradient(rng, padding_idx, row):
    V, C = 7, 5
    ids = rng.integers(0, V, size=(4, 9))
    ids[0, :3] = row  # the padding row occurs, several times
    weight = rng.standard_normal((V, C)).astype(np.float32)
    dout = rng.standard_normal((4, 9, C)).astype(np.float32)
    out, dweight = check_embedding(ids, weight, dout, padding_idx)
    # the lookup itself is unchanged: the padding row is read as it is
    np.testing.assert_array_equal(out, reference.embedding(ids, weight))
    np.testing.assert_array_equal(dweight[row], np.zeros(C, np.float32))


def test_padding_idx_bad_values(rng):
    weight = attnkit.tensor(rng.standard_normal((10, 4)).astype(np.float32))
    ids = attnkit.tensor([1, 2])
    with pytest.raises(
        ValueError,
        match=r"embedding: argument 'padding_idx' expected an integer in \[-10, 10\) "
        r"\(num_embeddings=10\), got 10",
    ):
        F.embedding(ids, weight, padding_idx=10)
    with pytest.raises(ValueError, match="got -11"):
        F.embedding(ids, weight, padding_idx=-11)
    with pytest.raises(TypeError, match="embedding: argument 'padding_idx' expected None or an int, got float"):
        F.embedding(ids, weight, padding_idx=1.0)
    with pytest.raises(TypeError, match="got bool"):
        F.embedding(ids, weight, padding_idx=True)


def test_bad_arguments(rng):
    weight = attnkit.tensor(rng.standard_normal((10, 4)).astype(np.float32))
    ids = attnkit.tensor([1, 2])
    with pytest.raises(TypeError, match="embedding: argument 'input' expected int32 or int64 token ids, got float32"):
        F.embedding(attnkit.tensor([1.0, 2.0]), weight)
    with pytest.raises(TypeError, match="embedding: argument 'weight' expected float32 or bfloat16, got int64"):
        F.embedding(ids, attnkit.tensor([[1, 2]]))
    with pytest.raises(
        ValueError,
        match=r"embedding: argument 'weight' expected a 2-d \[num_embeddings, "
        r"embedding_dim\] array, got \[10\]",
    ):
        F.embedding(ids, attnkit.tensor(np.ones(10, np.float32)))
    with pytest.raises(TypeError, match="embedding: argument 'input' expected an attnkit.Tensor, got list"):
        F.embedding([1, 2], weight)
    with pytest.raises(
        ValueError,
        match=r"embedding_backward: argument 'grad_output' expected the shape of "
        r"'input' plus an embedding dimension, \[2, C\], got \[3, 4\]",
    ):
        _C.embedding_backward(_C.zeros([3, 4], "float32"), ids._array, 10)
    with pytest.raises(ValueError, match=r"\[C\], got \[\]"):
        _C.embedding_backward(_C.zeros([], "float32"), as_tensor(np.int64(3))._array, 10)
