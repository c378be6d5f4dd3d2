"""attnkit.models.GPT: the GPT-2 parameter count, the forward pass and the
gradients against a float64 numpy GPT reading the same weights, learning
(overfitting one batch), and bad input."""

import math

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from model_check import check_gradients, fit_one_batch, parameter_values, reference_attention

import attnkit
from attnkit.models import GPT, GPTConfig

# These tests seed the default generator: restore its state after each one.
pytestmark = pytest.mark.usefixtures("keep_default_generator")


def tiny_config(**changes):
    settings = dict(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=8, dropout=0.0, bias=True)
    settings.update(changes)
    return GPTConfig(**settings)


def gpt_reference(values, config, idx, dtype=np.float64):
    """The GPT forward in numpy, every step in ``dtype``; returns the logits."""
    p = {name: array.astype(dtype) for name, array in values.items()}
    batch, steps = idx.shape
    heads, width = config.n_head, config.n_embd
    head_dim = width // heads

    def layer_norm(x, prefix):
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        out = (x - mean) / np.sqrt(variance + dtype(1e-5)) * p[prefix + ".weight"]
        return out + p[prefix + ".bias"] if config.bias else out

    def linear(x, prefix):
        out = x @ p[prefix + ".weight"].T
        return out + p[prefix + ".bias"] if config.bias else out

    causal = np.tril(np.ones((steps, steps), bool))
    x = p["wte.weight"][idx] + p["wpe.weight"][:steps]
    for layer in range(config.n_layer):
        prefix = f"blocks.{layer}."
        q, k, v = np.split(linear(layer_norm(x, prefix + "norm1"), prefix + "self_attn.qkv_proj"), 3, axis=-1)
        q, k, v = (t.reshape(batch, steps, heads, head_dim) for t in (q, k, v))
        attended = reference_attention(q, k, v, causal, dtype)
        x = x + linear(attended, prefix + "self_attn.out_proj")
        hidden = linear(layer_norm(x, prefix + "norm2"), prefix + "feed_forward.fc1")
        hidden = np.asarray(reference.gelu(hidden, "tanh")).astype(dtype)
        x = x + linear(hidden, prefix + "feed_forward.fc2")
    return layer_norm(x, "ln_f") @ p["wte.weight"].T


def test_gpt2_small_parameter_count(monkeypatch):
    # The count does not depend on the values: skip the random fills (1.9 GB
    # of float64 scratch and ~10 s for GPT-2's 124M numbers); only allocate.
    monkeypatch.setattr(attnkit.nn.init, "normal_", lambda tensor, *args, **kwargs: tensor)
    monkeypatch.setattr(attnkit.nn.init, "uniform_", lambda tensor, *args, **kwargs: tensor)
    model = GPT(GPTConfig.gpt2())
    assert model.num_parameters() == 124_439_808
    assert model.config.n_layer == 12 and model.config.block_size == 1024


def test_layout_tied_head_and_initialization():
    attnkit.manual_seed(20)
    config = tiny_config(vocab_size=64, n_embd=32, n_layer=4, n_head=4, block_size=16)
    model = GPT(config)
    names = dict(model.named_parameters())
    assert not any("head" in name for name in names)  # the head is wte itself
    # wte, wpe, ln_f (2) and per block: 2 norms (4), qkv and out (4), fc1 and fc2 (4)
    assert len(names) == 2 + 2 + 4 * 12
    width = 32
    per_block = (
        4 * width
        + (3 * width * width + 3 * width)
        + (width * width + width)
        + (4 * width * width + 4 * width)
        + (4 * width * width + width)
    )
    assert model.num_parameters() == 64 * width + 16 * width + 4 * per_block + 2 * width
    # GPT-2 init: residual projections have std 0.02 / sqrt(2 * n_layer), the rest 0.02
    residual = np.concatenate(
        [
            names[f"blocks.{i}.{n}.weight"].detach().numpy().ravel()
            for i in range(4)
            for n in ("self_attn.out_proj", "feed_forward.fc2")
        ]
    )
    other = np.concatenate(
        [
            names[f"blocks.{i}.{n}.weight"].detach().numpy().ravel()
            for i in range(4)
            for n in ("self_attn.qkv_proj", "feed_forward.fc1")
        ]
    )
    assert abs(residual.std() - 0.02 / math.sqrt(8)) < 0.1 * 0.02 / math.sqrt(8)
    assert abs(other.std() - 0.02) < 0.1 * 0.02
    assert np.all(names["blocks.0.self_attn.qkv_proj.bias"].detach().numpy() == 0)


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_reference(cpu_isa, rng, bias):
    attnkit.manual_seed(21)
    config = tiny_config(vocab_size=13, n_layer=2, n_embd=16, block_size=9, bias=bias)
    model = GPT(config)
    idx = rng.integers(0, 13, size=(3, 9))
    logits = model(attnkit.from_numpy(idx)).detach().numpy()
    assert logits.shape == (3, 9, 13)
    values = parameter_values(model)
    assert_reduction_close(logits, gpt_reference(values, config, idx), gpt_reference(values, config, idx, np.float32))


def test_gradients_match_float64_finite_differences(cpu_isa, rng):
    """Every gradient of a 2-layer GPT's mean cross-entropy against central
    differences of the float64 reference (itself checked against the model's
    forward above)."""
    attnkit.manual_seed(22)
    config = tiny_config(n_layer=2)
    model = GPT(config)
    idx = rng.integers(0, config.vocab_size, size=(2, 5))
    targets = rng.integers(0, config.vocab_size, size=(2, 5))
    # larger weights than GPT-2's init, so every path carries a visible gradient
    for parameter in model.parameters():
        attnkit.nn.init.normal_(parameter, 0.0, 0.5)
    check_gradients(model, idx, targets, lambda values: gpt_reference(values, config, idx))


def test_overfits_one_batch(rng):
    attnkit.manual_seed(23)
    config = tiny_config(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32)
    assert fit_one_batch(GPT(config), rng)[-1] < 0.05


def test_cached_generation_equals_full_sequence(cpu_isa, rng):
    attnkit.manual_seed(24)
    config = tiny_config(vocab_size=11, block_size=10, n_layer=2, n_embd=16)
    model = GPT(config)
    model.eval()
    idx = rng.integers(0, 11, size=(2, 10))
    with attnkit.no_grad():
        caches = model.make_caches(batch=2)
        pieces = [model(attnkit.from_numpy(idx[:, :4].copy()), caches=caches).numpy()]
        pieces += [model(attnkit.from_numpy(idx[:, t : t + 1].copy()), caches=caches).numpy() for t in range(4, 10)]
        with pytest.raises(ValueError, match="block_size"):
            model(attnkit.from_numpy(idx[:, :1].copy()), caches=caches)  # position 11 of 10
    values = parameter_values(model)
    assert_reduction_close(
        np.concatenate(pieces, axis=1),
        gpt_reference(values, config, idx),
        gpt_reference(values, config, idx, np.float32),
    )


def test_state_dict_round_trip_keeps_the_tie(rng):
    config = tiny_config(vocab_size=11, n_layer=2)
    attnkit.manual_seed(25)
    source = GPT(config)
    attnkit.manual_seed(26)
    target = GPT(config)
    state = source.state_dict()
    assert "wte.weight" in state and not any("head" in name for name in state)
    result = target.load_state_dict(state)
    assert not result.missing_keys and not result.unexpected_keys
    idx = attnkit.from_numpy(rng.integers(0, 11, size=(2, 6)))
    np.testing.assert_array_equal(target(idx).detach().numpy(), source(idx).detach().numpy())
    # the head still reads the (loaded) token embedding: changing one moves the other
    attnkit.nn.init.zeros_(target.wte.weight)
    np.testing.assert_array_equal(target(idx).detach().numpy(), np.zeros((2, 6, 11), np.float32))


def test_bad_input():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="block_size"):
        model(attnkit.zeros(1, 7, dtype=attnkit.int64))
    with pytest.raises(ValueError, match="7"):
        model(attnkit.tensor([[1, 2, 7]]))  # id 7 in a vocabulary of 7
    with pytest.raises(ValueError, match="idx"):
        model(attnkit.zeros(1, 3))  # float ids
    with pytest.raises(ValueError, match="idx"):
        model(attnkit.zeros(3, dtype=attnkit.int64))  # no batch dimension
    with pytest.raises(TypeError, match="config"):
        GPT({"n_layer": 1})
