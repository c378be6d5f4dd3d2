"""The calls tests/test_fuzz.py found that crashed, hung or raised an unclear
error, each kept here as a regression test with the answer it must give."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import attnkit
import attnkit.nn as nn
import attnkit.nn.functional as F
from attnkit import generation
from attnkit.data import get_batch
from attnkit.models import GPT, GPTConfig
from attnkit.random import Generator

BEYOND_INT64 = [2**63, 2**64 - 1, 2**100, -(2**63) - 1]


@pytest.mark.parametrize("value", BEYOND_INT64)
def test_integers_beyond_int64_are_refused_by_name(value):
    """pybind11 could not even convert them: its "incompatible function
    arguments" named neither the op nor the argument."""
    x = attnkit.zeros(2, 3)
    expected = r"argument '{}' expected integers in \[-2\*\*63, 2\*\*63\), got -?" + str(abs(value))
    for call, argument in (
        (lambda: F.permute(x, 1, value), "dims"),
        (lambda: F.split(x, [value, 1], 0), "split_size_or_sections"),
        (lambda: F.narrow(x, 1, abs(value), 1), "start"),  # (a negative start counts from the end)
        (lambda: F.narrow(x, 1, 0, value), "length"),
        (lambda: x.sum(value), "dim"),
        (lambda: x.mean((0, value)), "dim"),
        (lambda: x[[0, value]], "key"),
        (lambda: F.attention_qkv(attnkit.zeros(1, 3, 12), value), "num_heads"),
        (lambda: F.attention_qkv(attnkit.zeros(1, 3, 12), 2, value), "num_kv_heads"),
    ):
        with pytest.raises(ValueError, match=expected.format(argument)):
            call()
    sizes = r"{}: argument 'normalized_shape' expected sizes in \[0, 2\*\*63\)"
    with pytest.raises(ValueError, match=sizes.format("layer_norm")):
        F.layer_norm(x, value)
    with pytest.raises(ValueError, match=sizes.format("rms_norm")):
        F.rms_norm(x, (value,))


@pytest.mark.parametrize("value", [2**63, 2**64])
def test_module_sizes_beyond_int64_are_refused_by_name(value):
    with pytest.raises(ValueError, match=r"Linear: argument 'out_features' expected an integer in \[0, 2\*\*63\)"):
        nn.Linear(3, value)
    with pytest.raises(ValueError, match=r"Embedding: argument 'num_embeddings' expected an integer in \[1, 2\*\*63\)"):
        nn.Embedding(value, 4)
    with pytest.raises(ValueError, match=r"LayerNorm: argument 'normalized_shape' expected sizes in \[0, 2\*\*63\)"):
        nn.LayerNorm(value)


def test_a_window_or_top_k_beyond_int64_means_no_limit(rng):
    """Both only ever hide less as they grow: beyond int64 they hide nothing."""
    q, k, v = (attnkit.tensor(rng.standard_normal((1, 5, 2, 4)).astype(np.float32)) for _ in range(3))
    plain = F.attention(q, k, v, causal=True).numpy()
    np.testing.assert_array_equal(F.attention(q, k, v, causal=True, window=2**64).numpy(), plain)
    logits = attnkit.tensor(rng.standard_normal((2, 9)).astype(np.float32))
    kept = generation.sample(logits, top_k=2**64, generator=Generator(4))
    np.testing.assert_array_equal(kept.numpy(), generation.sample(logits, generator=Generator(4)).numpy())


def test_a_tensor_is_not_taken_for_a_normalized_shape():
    """Iterating a tensor of 2**31 rows as a sequence of sizes built a list
    of 2**31 tensors (a MemoryError with no message)."""
    x = attnkit.zeros(3, 8)
    for shape in (attnkit.zeros(2**31, 0, 2**31), attnkit.tensor([8])):
        with pytest.raises(TypeError, match="layer_norm: argument 'normalized_shape' expected an int or a tuple"):
            F.layer_norm(x, shape)
    assert F.layer_norm(x, [8]).shape == (3, 8) and F.layer_norm(x, (8,)).shape == (3, 8)


def test_arange_of_ranges_too_long_for_a_double():
    """(end - start) / step overflowed to +-inf, and math.ceil(inf) raised OverflowError."""
    assert attnkit.arange(9.2e18, 1e300, -1e-45).shape == (0,)
    with pytest.raises(ValueError, match="arange: the range has 9223372036854775808 values or more"):
        attnkit.arange(1e300, 8.0, -1e-45)
    with pytest.raises(ValueError, match="arange: the range has 18446744073709551616 values or more"):
        attnkit.arange(0, 2**64)


def test_batches_of_2_to_the_62_windows_are_refused():
    """Two 32-bit random numbers per window: the count overflowed int64."""
    with pytest.raises(
        ValueError, match=r"random_offsets: argument 'batch_size' expected a positive int below 2\*\*62"
    ):
        get_batch(np.arange(100), 2**63 - 1, 7)


def test_sgd_hyperparameters_beyond_float32_are_refused():
    """The update is float32: a momentum of 1e39 became inf with a numpy overflow warning."""
    with pytest.raises(ValueError, match=r"SGD: argument 'momentum' expected a finite number in \[0.0, 3.40"):
        attnkit.optim.SGD([nn.Parameter(attnkit.zeros(3))], lr=0.1, momentum=1e39)


def test_a_gpt_of_no_layers_is_refused():
    """Its residual init divided by sqrt(2 n_layer): ZeroDivisionError."""
    for n_layer in (0, -1):
        with pytest.raises(ValueError, match=f"GPTConfig: field 'n_layer' expected an int >= 1, got {n_layer}"):
            GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=n_layer, n_head=1, n_embd=4))


def test_low_precision_to_integer_rounds_as_float32_does():
    """float16/bfloat16 went through numpy's conversion (NaN and inf became
    -2**63 with a warning); now they widen to float32 and take the native
    cast's rules: toward zero, saturating, NaN to 0."""
    values = [1.9, -2.5, float("nan"), float("inf"), -float("inf"), 70000.0]
    for dtype in (attnkit.float16, attnkit.bfloat16):
        t = attnkit.tensor(values, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for target in (attnkit.int32, attnkit.int64, attnkit.bool_):
                np.testing.assert_array_equal(t.to(target).numpy(), t.float().to(target).numpy())
        assert t.to(attnkit.int32).tolist()[:3] == [1, -2, 0]


def test_floats_beyond_float16_round_to_inf_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attnkit.tensor([1e300, -1e5], dtype=attnkit.float16).tolist() == [float("inf"), -float("inf")]
