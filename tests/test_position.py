"""The sinusoidal position table and rotary position embedding (RoPE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_matches_finite_differences
from op_check import check_op

import attnkit
import attnkit.nn.functional as F
from attnkit import _C

# ------------------------------------------------------------- sinusoidal --


@pytest.mark.parametrize(
    "length, dim, offset",
    [
        (1, 1, 0),
        (3, 2, 0),
        (17, 3, 0),
        (127, 64, 5),
        (1000, 16, 0),
        (64, 128, 1000),
        (3, 17, 10**6),
    ],
)
def test_sinusoidal_matches_reference(length, dim, offset):
    table = F.sinusoidal_position_encoding(length, dim, offset)
    assert table.shape == (length, dim) and table.dtype == attnkit.float32
    assert_elementwise_close(table.numpy(), reference.sinusoidal_position_encoding(length, dim, offset))


def test_sinusoidal_known_values():
    table = F.sinusoidal_position_encoding(2, 4).numpy()
    np.testing.assert_array_equal(table[0], [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(table[1], np.float32([np.sin(1.0), np.cos(1.0), np.sin(0.01), np.cos(0.01)]))


def test_sinusoidal_offset_selects_rows():
    np.testing.assert_array_equal(
        F.sinusoidal_position_encoding(10, 6, 20).numpy(), F.sinusoidal_position_encoding(30, 6).numpy()[20:]
    )


def test_sinusoidal_is_accurate_at_large_positions():
    # At position 10^5 a float32 angle is off by up to 2^-8 radians; the
    # double angles keep the table within float rounding of the exact values.
    length, dim, offset = 8, 32, 100_000
    expected = reference.sinusoidal_position_encoding(length, dim, offset)
    table = F.sinusoidal_position_encoding(length, dim, offset).numpy()
    assert_elementwise_close(table, expected)
    positions = np.arange(offset, offset + length, dtype=np.float32)[:, None]
    frequencies = np.float32(10000.0) ** (-np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    naive_angles = (positions * frequencies).astype(np.float32)
    naive = np.empty((length, dim), np.float32)
    naive[:, 0::2], naive[:, 1::2] = np.sin(naive_angles), np.cos(naive_angles)
    assert np.max(np.abs(naive - expected)) > 100 * np.max(np.abs(table - expected))


def test_sinusoidal_errors():
    op = "sinusoidal_position_encoding"
    with pytest.raises(ValueError, match=f"{op}: argument 'length' expected a length >= 0, got -1"):
        F.sinusoidal_position_encoding(-1, 4)
    with pytest.raises(ValueError, match=f"{op}: argument 'dim' expected a dimension >= 1, got 0"):
        F.sinusoidal_position_encoding(4, 0)
    with pytest.raises(ValueError, match=f"{op}: argument 'offset' expected a position >= 0, got -2"):
        F.sinusoidal_position_encoding(4, 4, -2)
    with pytest.raises(TypeError, match=f"{op}: argument 'dim' expected an int, got float"):
        F.sinusoidal_position_encoding(4, 4.0)
    assert F.sinusoidal_position_encoding(0, 8).shape == (0, 8)


# -------------------------------------------------------------------- RoPE --


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 17, 3, 16), (1, 127, 2, 64), (2, 5, 4, 80), (1, 1000, 1, 128)])
@pytest.mark.parametrize("offset, base", [(0, 10000.0), (7, 10000.0), (100_000, 500000.0)])
@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_matches_reference(rng, shape, offset, base, interleaved):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)

    def expected(x, dy):
        return reference.rope(x, offset, base, interleaved), reference.rope_backward(dy, offset, base, interleaved)

    # Each output is a sum or difference of two products: the error scales
    # with the terms' magnitudes, not with the (possibly cancelled) result.
    scales = [reference.rope_term_magnitudes(values, offset, base, interleaved) for values in (x, dy)]
    options = {"offset": offset, "base": base, "interleaved": interleaved}
    check_op(F.rope, [x], dy, expected, options=options, scales=scales)


def test_reference_rope_backward_by_finite_differences(rng):
    shape, offset, base = (1, 3, 2, 4), 2, 100.0
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    for interleaved in (True, False):
        assert_matches_finite_differences(
            reference.rope_backward(dy, offset, base, interleaved),
            lambda v, interleaved=interleaved: reference.rope(v, offset, base, interleaved),
            x,
            dy,
        )


def test_rope_default_is_interleaved(rng):
    x = attnkit.tensor(rng.standard_normal((1, 4, 1, 6)).astype(np.float32))
    np.testing.assert_array_equal(F.rope(x).numpy(), F.rope(x, 0, 10000.0, True).numpy())
    assert_elementwise_close(
        F.rope(x).numpy(),
        reference.rope(x.numpy(), 0, 10000.0, True),
        scale=reference.rope_term_magnitudes(x.numpy(), 0, 10000.0, True),
    )


def test_rope_layouts_are_a_permutation_of_each_other(rng):
    x = rng.standard_normal((2, 9, 3, 12)).astype(np.float32)
    # Rotate-half pair i is (i, i + 6); interleaved pair i is (2i, 2i + 1).
    to_interleaved = np.stack([np.arange(6), np.arange(6) + 6], axis=1).reshape(-1)
    half = F.rope(attnkit.tensor(x), 3, interleaved=False).numpy()
    interleaved = F.rope(attnkit.tensor(np.ascontiguousarray(x[..., to_interleaved])), 3).numpy()
    np.testing.assert_array_equal(interleaved, half[..., to_interleaved])


def test_rope_offset_matches_decoding_one_position_at_a_time(rng):
    x = rng.standard_normal((2, 11, 3, 8)).astype(np.float32)
    full = F.rope(attnkit.tensor(x)).numpy()
    for t in (0, 5, 10):
        step = F.rope(attnkit.tensor(np.ascontiguousarray(x[:, t : t + 1])), offset=t).numpy()
        np.testing.assert_array_equal(step, full[:, t : t + 1])


def test_rope_errors():
    x = attnkit.tensor(np.ones((1, 2, 1, 4), np.float32))
    with pytest.raises(
        ValueError,
        match=r"rope: argument 'x' expected an even head_dim \(RoPE rotates pairs\), "
        r"got \[1, 2, 1, 3\]",
    ):
        F.rope(attnkit.tensor(np.ones((1, 2, 1, 3), np.float32)))
    with pytest.raises(
        ValueError,
        match=r"rope: argument 'x' expected a 4-d \[batch, seq, heads, head_dim\] array, "
        r"got \[2, 1, 4\]",
    ):
        F.rope(attnkit.tensor(np.ones((2, 1, 4), np.float32)))
    with pytest.raises(ValueError, match="rope: argument 'offset' expected a position >= 0, got -1"):
        F.rope(x, offset=-1)
    with pytest.raises(ValueError, match=r"rope: argument 'offset' expected offset \+ length <= 2\^53"):
        F.rope(x, offset=2**53)
    with pytest.raises(
        ValueError,
        match=r"rope: argument 'offset' expected integers in \[-2\*\*63, 2\*\*63\), got 18446744073709551616",
    ):
        F.rope(x, offset=2**64)
    for base in (0.0, -2.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="rope: argument 'base' expected a finite base > 0"):
            F.rope(x, base=base)
    with pytest.raises(TypeError, match="rope: argument 'interleaved' expected a bool"):
        F.rope(x, interleaved="yes")
    with pytest.raises(TypeError, match="rope: argument 'x' expected float32 or bfloat16, got int64"):
        F.rope(attnkit.tensor(np.ones((1, 2, 1, 4), np.int64)))
    with pytest.raises(TypeError, match="rope: argument 'x' expected an attnkit.Tensor"):
        F.rope(np.ones((1, 2, 1, 4), np.float32))
    with pytest.raises(ValueError, match="rope_backward: argument 'base' expected a finite base > 0"):
        _C.rope_backward(x._array, 0, 0.0, True)


# ------------------------------------------- RoPE: positions, frequencies --


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_per_row_positions_and_frequencies_match_reference(rng, interleaved):
    shape = (3, 7, 2, 10)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    positions = np.array([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 1, 2, 3], [100, 7, 5000, 31, 32, 33, 7]])
    frequencies = rng.uniform(0.001, 2.0, size=5)

    def expected(x, dy):  # backward: the rotation by minus the angle
        return (
            reference.rope_at(x, positions, frequencies, interleaved),
            reference.rope_at(dy, -positions, frequencies, interleaved),
        )

    y = reference.rope_at(x.astype(np.float64), positions, frequencies, interleaved)
    magnitude = np.abs(reference.rope_at(np.abs(x), positions, frequencies, interleaved)) + np.abs(x)
    options = {
        "interleaved": interleaved,
        "positions": attnkit.from_numpy(positions),
        "frequencies": frequencies.tolist(),
    }
    check_op(F.rope, [x], dy, expected, options=options, scales=[magnitude, np.abs(dy) + np.abs(y)])


def test_rope_positions_give_the_bits_of_the_offset_form(rng):
    # Any position, in any row, gets the angles the contiguous form gives it:
    # a left-padded batch decodes as each prompt alone, bit for bit.
    x = rng.standard_normal((2, 6, 3, 8)).astype(np.float32)
    positions = np.array([[0, 0, 0, 1, 2, 3], [70, 33, 64, 65, 95, 96]])
    y = F.rope(attnkit.tensor(x), positions=attnkit.from_numpy(positions.astype(np.int32)), interleaved=False).numpy()
    for b in range(2):
        for t in range(6):
            alone = F.rope(
                attnkit.tensor(x[b : b + 1, t : t + 1].copy()), offset=int(positions[b, t]), interleaved=False
            )
            np.testing.assert_array_equal(y[b, t], alone.numpy()[0, 0])


def test_rope_frequencies_of_the_base_are_the_default(rng):
    x = attnkit.tensor(rng.standard_normal((1, 40, 2, 16)).astype(np.float32))
    given = F.rope(x, 3, frequencies=F.rope_frequencies(16, 500000.0), interleaved=False).numpy()
    default = F.rope(x, 3, base=500000.0, interleaved=False).numpy()
    np.testing.assert_allclose(given, default, rtol=0, atol=1e-6)


def test_rope_frequencies_llama3_and_linear_scaling():
    head_dim, base = 128, 500000.0
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    got = F.rope_frequencies(head_dim, base, scaling)
    # Llama 3.1's rule, pair by pair, in plain Python floats.
    for i, w in enumerate(got):
        plain = base ** (-2 * i / head_dim)
        wavelength = 2 * math.pi / plain
        if wavelength < 8192 / 4.0:
            expected = plain
        elif wavelength > 8192 / 1.0:
            expected = plain / 8.0
        else:
            blend = (8192 / wavelength - 1.0) / (4.0 - 1.0)
            expected = (1 - blend) * plain / 8.0 + blend * plain
        assert w == pytest.approx(expected, rel=1e-15)
    # all three regimes occur for these (Llama 3.1's own) settings
    plain = F.rope_frequencies(head_dim, base)
    assert (got == plain).sum() > 0 and (got == plain / 8).sum() > 0 and ((got != plain) & (got != plain / 8)).sum() > 0
    np.testing.assert_array_equal(
        F.rope_frequencies(64, 10000.0, {"type": "linear", "factor": 4.0}), F.rope_frequencies(64, 10000.0) / 4.0
    )
    np.testing.assert_array_equal(
        F.rope_frequencies(64, 10000.0, {"rope_type": "default"}), F.rope_frequencies(64, 10000.0)
    )


def test_rope_positions_and_frequencies_errors():
    x = attnkit.tensor(np.ones((2, 3, 1, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"rope: argument 'positions' expected shape \[2, 3\] \(\[batch, seq\] of x\), got \[2, 2\]"
    ):
        F.rope(x, positions=attnkit.zeros(2, 2, dtype=attnkit.int64))
    with pytest.raises(ValueError, match=r"rope: argument 'positions' expected positions in \[0, 2\^53\), got -1"):
        F.rope(x, positions=attnkit.tensor(np.array([[0, 1, 2], [0, -1, 2]])))
    with pytest.raises(TypeError, match="rope: argument 'positions' expected int32 or int64, got float32"):
        F.rope(x, positions=attnkit.zeros(2, 3))
    with pytest.raises(
        ValueError, match=r"rope: argument 'frequencies' expected 2 values \(head_dim / 2\), got 3 values"
    ):
        F.rope(x, frequencies=[1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="rope: argument 'frequencies' expected finite frequencies > 0, got nan"):
        F.rope(x, frequencies=[1.0, float("nan")])
    with pytest.raises(TypeError, match="rope: argument 'frequencies' expected a sequence of numbers"):
        F.rope(x, frequencies=["a", "b"])
    with pytest.raises(ValueError, match="rope_frequencies: argument 'head_dim' expected an even int >= 2, got 5"):
        F.rope_frequencies(5)
    with pytest.raises(ValueError, match="rope_type 'dynamic'; supported: default, linear, llama3"):
        F.rope_frequencies(8, scaling={"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(ValueError, match="'factor' a finite number > 0, got 0"):
        F.rope_frequencies(8, scaling={"rope_type": "linear", "factor": 0})
    with pytest.raises(ValueError, match="high_freq_factor > low_freq_factor"):
        F.rope_frequencies(
            8,
            scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 4.0,
                "high_freq_factor": 1.0,
                "original_max_position_embeddings": 64,
            },
        )
