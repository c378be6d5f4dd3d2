"""nn.SinusoidalPositionalEncoding and nn.LearnedPositionalEmbedding: values
against the float64 table (tests/reference/position.py) and the weight rows, offsets,
gradients by finite differences, state_dict contents, and bad input."""

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close
from test_attention_module import check_gradients_by_finite_differences, numpy_or_none

import attnkit
from attnkit import nn
from attnkit.nn import functional as F

pytestmark = pytest.mark.usefixtures("keep_default_generator")


# ------------------------------------------------------------- sinusoidal --


@pytest.mark.parametrize("d_model, steps, offset", [(1, 1, 0), (3, 17, 0), (16, 5, 3), (127, 7, 40)])
def test_sinusoidal_adds_the_table_rows(rng, d_model, steps, offset):
    module = nn.SinusoidalPositionalEncoding(d_model, max_len=64)
    x = rng.standard_normal((2, steps, d_model)).astype(np.float32)
    out = module(attnkit.from_numpy(x), offset=offset).numpy()
    table = reference.sinusoidal_position_encoding(steps, d_model, offset)
    # One rounding of the table entry and one of the sum: bounded relative to
    # the two terms, since they may cancel.
    assert_elementwise_close(out, x.astype(np.float64) + table, scale=np.abs(x) + np.abs(table))
    # the rows are those of F.sinusoidal_position_encoding, bit for bit
    rows = module.encoding(steps, offset=offset).numpy()
    np.testing.assert_array_equal(rows, F.sinusoidal_position_encoding(steps, d_model, offset).numpy())
    np.testing.assert_array_equal(out, x + rows)


def test_sinusoidal_offset_continues_the_sequence(rng):
    """Decoding one position at a time with offset gives the full sequence's rows."""
    module = nn.SinusoidalPositionalEncoding(8, max_len=10)
    x = rng.standard_normal((3, 10, 8)).astype(np.float32)
    full = module(attnkit.from_numpy(x)).numpy()
    steps = [module(attnkit.from_numpy(x[:, t : t + 1].copy()), offset=t).numpy() for t in range(10)]
    np.testing.assert_array_equal(np.concatenate(steps, axis=1), full)


def test_sinusoidal_gradient_matches_finite_differences(cpu_isa, rng):
    module = nn.SinusoidalPositionalEncoding(6, max_len=12)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    check_gradients_by_finite_differences(
        module, lambda m, x: m(x, offset=5), lambda x: x + reference.sinusoidal_position_encoding(4, 6, 5), [x], rng
    )


def test_sinusoidal_has_no_state_to_save():
    module = nn.SinusoidalPositionalEncoding(4, max_len=6)
    assert list(module.parameters()) == [] and module.state_dict() == {}
    assert [name for name, _ in module.named_buffers()] == ["table"]
    assert module.table.shape == (6, 4)
    assert repr(module) == "SinusoidalPositionalEncoding(d_model=4, max_len=6)"


def test_sinusoidal_errors():
    module = nn.SinusoidalPositionalEncoding(4, max_len=6)
    with pytest.raises(ValueError, match=r"positions 4\.\.6 .*'x'.* max_len=6"):
        module(attnkit.zeros(1, 3, 4), offset=4)
    with pytest.raises(ValueError, match="max_len=6"):
        module(attnkit.zeros(2, 7, 4))
    with pytest.raises(ValueError, match="'seq_len'.* max_len=6"):
        module.encoding(7)
    with pytest.raises(ValueError, match="'offset' expected a position >= 0, got -1"):
        module(attnkit.zeros(1, 2, 4), offset=-1)
    with pytest.raises(TypeError, match="'offset' expected an int"):
        module(attnkit.zeros(1, 2, 4), offset=1.0)
    with pytest.raises(ValueError, match=r"'x' expected shape \[batch, seq, 4\], got \[1, 2, 5\]"):
        module(attnkit.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="'d_model'"):
        nn.SinusoidalPositionalEncoding(0)


# ---------------------------------------------------------------- learned --


def test_learned_rows_and_positions(rng):
    attnkit.manual_seed(30)
    module = nn.LearnedPositionalEmbedding(9, 5)
    assert isinstance(module.weight, nn.Parameter) and module.weight.shape == (9, 5)
    assert list(module.state_dict()) == ["weight"]
    weight = module.weight.detach().numpy()
    np.testing.assert_array_equal(module(4).detach().numpy(), weight[:4])
    np.testing.assert_array_equal(module(4, offset=5).detach().numpy(), weight[5:9])
    positions = rng.integers(0, 7, size=(3, 4))
    np.testing.assert_array_equal(module(attnkit.from_numpy(positions)).detach().numpy(), weight[positions])
    np.testing.assert_array_equal(
        module(attnkit.from_numpy(positions), offset=2).detach().numpy(), weight[positions + 2]
    )
    assert module(0).shape == (0, 5)
    assert repr(module) == "LearnedPositionalEmbedding(max_len=9, d_model=5)"


def test_learned_gradient_matches_finite_differences(cpu_isa, rng):
    attnkit.manual_seed(31)
    module = nn.LearnedPositionalEmbedding(7, 3)
    positions = np.array([[0, 2, 2], [4, 1, 2]])  # repeated positions sum their gradients
    check_gradients_by_finite_differences(
        module, lambda m, p: m(p, offset=1), lambda p: numpy_or_none(module.weight)[p + 1], [positions], rng
    )
    module.zero_grad()
    check_gradients_by_finite_differences(
        module, lambda m: m(4, offset=3), lambda: numpy_or_none(module.weight)[3:7], [], rng
    )


def test_learned_errors():
    module = nn.LearnedPositionalEmbedding(6, 4)
    with pytest.raises(ValueError, match=r"positions 4\.\.6 .* max_len=6"):
        module(3, offset=4)
    with pytest.raises(ValueError, match="'positions' reaches position 7 .*max_len=6"):
        module(attnkit.tensor([[0, 5]]), offset=2)
    with pytest.raises(ValueError, match="'positions' expected positions >= 0, got -1"):
        module(attnkit.tensor([[0, -1]]))
    with pytest.raises(TypeError, match="'positions' expected int32 or int64"):
        module(attnkit.zeros(1, 2))
    with pytest.raises(TypeError, match="'positions' expected an int"):
        module(2.0)
    with pytest.raises(ValueError, match="'offset' expected a position >= 0"):
        module(2, offset=-3)
    with pytest.raises(ValueError, match="'max_len'"):
        nn.LearnedPositionalEmbedding(0, 4)
