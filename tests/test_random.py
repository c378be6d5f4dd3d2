"""Philox 4x32-10, the generator and dropout."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close

import attnkit
import attnkit.nn.functional as F
from attnkit import _C
from attnkit.random import Generator

# Random123's known-answer vectors for Philox 4x32-10 (tests/kat_vectors of the
# reference implementation by Salmon et al.): counter, key, expected output.
PHILOX_KNOWN_ANSWERS = [
    ([0x00000000] * 4, [0x00000000] * 2, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]
SIZES = [1, 3, 17, 127, 1000, 4099]
# Seeds and offsets whose high words are not zero, to exercise every counter word.
STREAMS = [(0, 0), (20261124, 7), (0xFEDCBA9876543210, 0x0123456789ABCDEF)]


def bits(n, seed, offset):
    return np.asarray(_C.random_bits(n, seed, offset)).view(np.uint32)


# ------------------------------------------------------------------ Philox --


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_philox_known_answers(cpu_isa, counter, key, expected):
    assert list(_C.philox4x32_10(counter, key)) == expected


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_reference_philox_known_answers(counter, key, expected):
    assert reference.philox4x32_10(np.array([counter]), key)[0].tolist() == expected


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed, offset", STREAMS)
def test_stream_matches_reference(cpu_isa, n, seed, offset):
    np.testing.assert_array_equal(bits(n, seed, offset), reference.philox_stream(n, seed, offset))


def test_stream_is_a_prefix_and_offsets_are_independent():
    long = bits(5000, 3, 9)
    np.testing.assert_array_equal(bits(777, 3, 9), long[:777])
    # Another offset or seed gives an unrelated stream: equal words by chance only.
    assert np.mean(bits(5000, 3, 10) == long) < 0.01
    assert np.mean(bits(5000, 4, 9) == long) < 0.01


def test_uniform_is_the_high_bits(cpu_isa):
    n = 1000
    values = np.asarray(_C.uniform([n], 5, 6))
    expected = (reference.philox_stream(n, 5, 6) >> 8).astype(np.float64) * 2.0**-24
    np.testing.assert_array_equal(values, expected)


def test_rand_statistics():
    attnkit.manual_seed(1234)
    values = attnkit.random.rand(1 << 20).numpy().astype(np.float64)
    assert values.dtype == np.float64 and values.min() >= 0.0 and values.max() < 1.0
    n = values.size
    # Mean 1/2 and variance 1/12, each within 5 standard errors.
    assert abs(values.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(values.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    # Chi-square over 64 equal bins (63 degrees of freedom: mean 63, sd 11.2).
    counts = np.bincount((values * 64).astype(np.int64), minlength=64)
    chi_square = np.sum((counts - n / 64) ** 2 / (n / 64))
    assert chi_square < 63 + 6 * 11.2
    # Neighbours are uncorrelated.
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 5 / np.sqrt(n)


def test_rand_shapes_and_errors():
    assert attnkit.random.rand(2, 3).shape == (2, 3)
    assert attnkit.random.rand((4,)).shape == (4,)
    assert attnkit.random.rand(0).shape == (0,)
    with pytest.raises(ValueError, match="rand: argument 'size'"):
        attnkit.random.rand(-1)
    with pytest.raises(TypeError, match="rand: argument 'generator'"):
        attnkit.random.rand(3, generator=5)


# --------------------------------------------------------------- Generator --


def test_manual_seed_makes_runs_reproducible():
    attnkit.manual_seed(42)
    first = [attnkit.random.rand(100).numpy().copy() for _ in range(3)]
    attnkit.manual_seed(42)
    again = [attnkit.random.rand(100).numpy().copy() for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # every op takes a fresh stream


def test_generator_offsets_and_state_dict():
    g = Generator(seed=7)
    assert (g.seed, g.offset) == (7, 0)
    assert g.next_stream() == (7, 0)
    assert g.next_stream() == (7, 1)
    state = g.state_dict()
    assert state == {"seed": 7, "offset": 2}
    after = [attnkit.random.rand(50, generator=g).numpy().copy() for _ in range(2)]
    resumed = Generator(seed=999)
    resumed.load_state_dict(state)
    again = [attnkit.random.rand(50, generator=resumed).numpy().copy() for _ in range(2)]
    for a, b in zip(after, again):
        np.testing.assert_array_equal(a, b)
    assert g.manual_seed(7) is g and g.offset == 0


def test_generator_is_separate_from_the_default():
    attnkit.manual_seed(11)
    default_before = attnkit.random.default_generator.offset
    attnkit.random.rand(10, generator=Generator(3))
    assert attnkit.random.default_generator.offset == default_before


def test_generator_errors():
    with pytest.raises(ValueError, match=r"manual_seed: argument 'seed' expected an integer in \[0, 2\*\*64\)"):
        attnkit.manual_seed(-1)
    with pytest.raises(ValueError, match="manual_seed: argument 'seed'"):
        attnkit.manual_seed(2**64)
    with pytest.raises(TypeError, match="manual_seed: argument 'seed' expected an int, got float"):
        attnkit.manual_seed(1.5)
    with pytest.raises(ValueError, match="load_state_dict: argument 'state'"):
        Generator().load_state_dict({"seed": 1})
    with pytest.raises(ValueError, match=r"load_state_dict: argument 'state\['offset'\]'"):
        Generator().load_state_dict({"seed": 1, "offset": -3})


# ----------------------------------------------------------------- dropout --


def dropout_pair(x_values, p, generator, grad_values):
    """Forward and backward of F.dropout; returns (y, dx, (seed, offset))."""
    x = attnkit.tensor(x_values, requires_grad=True)
    stream = (generator.seed, generator.offset)
    y = F.dropout(x, p, generator=generator)
    y.backward(attnkit.tensor(grad_values))
    return y.detach().numpy(), x.grad.numpy(), stream


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.875])
def test_dropout_matches_reference(cpu_isa, rng, n, p):
    x = rng.standard_normal(n).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    y, dx, (seed, offset) = dropout_pair(x, p, Generator(seed=n * 31 + 5), dy)
    assert_elementwise_close(y, reference.dropout(x, p, seed, offset))
    assert_elementwise_close(dx, reference.dropout_backward(dy, p, seed, offset))


def test_reference_dropout_gradient_by_finite_differences(rng):
    n, p, seed, offset, h = 40, 0.3, 8, 2, 1e-6
    x = rng.standard_normal(n)
    dy = rng.standard_normal(n)
    analytic = reference.dropout_backward(dy, p, seed, offset)
    numeric = np.array(
        [
            dy
            @ (reference.dropout(x + h * e, p, seed, offset) - reference.dropout(x - h * e, p, seed, offset))
            / (2 * h)
            for e in np.eye(n)
        ]
    )
    np.testing.assert_allclose(numeric, analytic, rtol=1e-7, atol=1e-9)


def test_dropout_shape_and_same_mask_in_backward(rng):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    y, dx, _ = dropout_pair(x, 0.5, Generator(1), np.ones_like(x))
    assert y.shape == x.shape and dx.shape == x.shape
    np.testing.assert_array_equal(y != 0, dx != 0)
    np.testing.assert_array_equal(y[y != 0], x[y != 0] * np.float32(2.0))


def test_dropout_mask_same_for_any_thread_count_and_isa(threads):
    n = 300_001  # many parallel chunks, and a ragged end
    x = attnkit.tensor(np.ones(n, np.float32))
    results = []
    for isa in attnkit.supported_cpu_isas():
        for count in (1, 2):
            attnkit.set_num_threads(count)
            previous = attnkit.cpu_isa()
            _C.select_cpu_isa(isa)
            try:
                results.append(F.dropout(x, 0.3, generator=Generator(77)).numpy().copy())
                results.append(bits(n, 77, 0))
            finally:
                _C.select_cpu_isa(previous)
    outputs, streams = results[0::2], results[1::2]
    for output in outputs[1:]:
        np.testing.assert_array_equal(output, outputs[0])
    for stream in streams[1:]:
        np.testing.assert_array_equal(stream, streams[0])


def test_dropout_reruns_give_the_same_mask():
    x = attnkit.tensor(np.ones(10_000, np.float32))
    attnkit.manual_seed(5)
    first = F.dropout(x, 0.4).numpy().copy()
    second = F.dropout(x, 0.4).numpy().copy()
    attnkit.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.4).numpy(), first)
    np.testing.assert_array_equal(F.dropout(x, 0.4).numpy(), second)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics(p):
    n = 1 << 20
    y = F.dropout(attnkit.tensor(np.ones(n, np.float32)), p, generator=Generator(2024)).numpy()
    kept = np.mean(y != 0)
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(np.unique(y), np.unique([0.0, np.float32(1 / (1 - p))]))
    # E[y] = 1 and Var[y] = p / (1 - p) for an input of ones.
    values = y.astype(np.float64)
    assert abs(values.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    # Var[y] = E[(y - 1)^2] = p / (1 - p); its estimate from n samples has
    # standard error sqrt((E[(y - 1)^4] - Var[y]^2) / n), with
    # E[(y - 1)^4] = p^4 / (1 - p)^3 + p (y - 1 is p / (1 - p) or -1). At
    # p = 1/2, (y - 1)^2 is always 1 and the estimate exact.
    variance = p / (1 - p)
    fourth_moment = p**4 / (1 - p) ** 3 + p
    estimate = np.mean((values - 1.0) ** 2)
    assert abs(estimate - variance) <= 5 * np.sqrt((fourth_moment - variance**2) / n) + 1e-12


def test_dropout_identity_cases(rng):
    x = attnkit.tensor(rng.standard_normal(10).astype(np.float32), requires_grad=True)
    offset = attnkit.random.default_generator.offset
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    assert attnkit.random.default_generator.offset == offset  # nothing drawn


def test_dropout_all(rng):
    x = attnkit.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.detach().numpy(), np.zeros((4, 3), np.float32))
    y.backward(attnkit.tensor(np.ones((4, 3), np.float32)))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((4, 3), np.float32))


def test_dropped_elements_are_zero_even_for_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf] * 100, np.float32)
    y = F.dropout(attnkit.tensor(x), 0.5, generator=Generator(3)).numpy()
    dropped = ~reference.dropout_keep_mask(x.size, 0.5, 3, 0)
    assert dropped.any() and (~dropped).any()
    np.testing.assert_array_equal(y[dropped], 0.0)
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * 2)


def test_dropout_errors():
    x = attnkit.tensor(np.ones(4, np.float32))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: argument 'p' expected a probability in \[0, 1\]"):
            F.dropout(x, p)
    with pytest.raises(TypeError, match="dropout: argument 'p' expected a float, got str"):
        F.dropout(x, "0.5")
    with pytest.raises(TypeError, match="dropout: argument 'input' expected an attnkit.Tensor"):
        F.dropout(np.ones(4, np.float32), 0.5)
    with pytest.raises(TypeError, match="dropout: argument 'input' expected float32 or bfloat16, got int64"):
        F.dropout(attnkit.tensor([1, 2, 3]), 0.5)
    with pytest.raises(TypeError, match="dropout: argument 'training' expected a bool"):
        F.dropout(x, 0.5, training=1)
    with pytest.raises(ValueError, match="dropout: argument 'p' expected a drop probability"):
        _C.dropout_forward(x._array, 1.0, 0, 0)
    with pytest.raises(TypeError, match="dropout_backward: argument 'grad_output' expected float32"):
        _C.dropout_backward(attnkit.tensor([1, 2])._array, 0.5, 0, 0)
