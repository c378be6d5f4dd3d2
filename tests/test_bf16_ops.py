"""bfloat16 inputs in the forward ops (inference on bfloat16 weights): every
op that takes them computes in float32 and rounds its result once, on every
CPU tier. Each is checked against the float64 reference on the same bfloat16
values (conftest: BFLOAT16_RESULT_RTOL) and, bit for bit, against the float32
op's result rounded to bfloat16; mixes of float32 and bfloat16 are refused
by name, and a backward through a bfloat16 op is refused before it runs."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from conftest import BFLOAT16_FLOAT32_SLACK, BFLOAT16_RESULT_RTOL
from reference import activation as ref_activation
from reference import loss as ref_loss
from reference import norm as ref_norm
from reference import position as ref_position
from reference.attention import attention_probabilities, attention_visibility

import attnkit
import attnkit.nn.functional as F
from attnkit import _dtypes

bf16 = attnkit.bfloat16


def bf16_values(rng, shape, scale=1.0, offset=0.0):
    """float64 values that are bfloat16 numbers (so the reference is exact)."""
    values = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
    return _dtypes.bfloat16_bits_to_float32(_dtypes.float32_to_bfloat16_bits(values)).astype(np.float64)


def as_bf16(values):
    return attnkit.tensor(values.astype(np.float32)).to(bf16)


def as_f32(values):
    return attnkit.tensor(values.astype(np.float32))


def widened(t):
    assert t.dtype == bf16
    return np.asarray(t.float().numpy(), np.float64)


def check(ours, float32_result, reference):
    """ours (bfloat16) against the float64 reference, and bit for bit against
    the float32 op's result rounded once."""
    assert ours.dtype == bf16
    rounded = float32_result.to(bf16)
    np.testing.assert_array_equal(widened(ours), widened(rounded))
    reference = np.asarray(reference, np.float64)
    actual = widened(ours)
    assert actual.shape == reference.shape
    row_scale = np.max(np.abs(reference), axis=-1, keepdims=True) if reference.ndim else np.abs(reference)
    bound = BFLOAT16_RESULT_RTOL * np.abs(reference) + BFLOAT16_FLOAT32_SLACK * row_scale
    excess = np.abs(actual - reference) - bound
    assert np.all(excess <= 0), f"worst excess {excess.max()} at {np.unravel_index(excess.argmax(), excess.shape)}"


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (5, 1000)])
def test_layer_norm_and_rms_norm(bf16_isa, rng, shape):
    x = bf16_values(rng, shape, scale=3.0, offset=40.0)  # mean >> std
    w, b = bf16_values(rng, shape[-1:]), bf16_values(rng, shape[-1:])
    ours = F.layer_norm(as_bf16(x), shape[-1:], as_bf16(w), as_bf16(b))
    check(ours, F.layer_norm(as_f32(x), shape[-1:], as_f32(w), as_f32(b)), ref_norm.layer_norm(x, w, b)[0])
    eps = 1e-6
    ours = F.rms_norm(as_bf16(x), shape[-1:], as_bf16(w), eps=eps)
    check(ours, F.rms_norm(as_f32(x), shape[-1:], as_f32(w), eps=eps), ref_norm.rms_norm(x, w, eps=eps)[0])


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_and_log_softmax(bf16_isa, rng, scale):
    x = bf16_values(rng, (7, 127), scale=scale)
    shifted = x - x.max(axis=-1, keepdims=True)
    log_reference = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    check(F.softmax(as_bf16(x)), F.softmax(as_f32(x)), np.exp(log_reference))
    check(F.log_softmax(as_bf16(x)), F.log_softmax(as_f32(x)), log_reference)


@pytest.mark.parametrize(
    "name, function, reference",
    [
        ("gelu", F.gelu, ref_activation.gelu),
        ("gelu_tanh", lambda t: F.gelu(t, approximate="tanh"), lambda x: ref_activation.gelu(x, "tanh")),
        ("relu", F.relu, ref_activation.relu),
        ("silu", F.silu, ref_activation.silu),
        ("tanh", F.tanh, ref_activation.tanh),
        ("swiglu", F.swiglu, ref_activation.swiglu),
    ],
)
def test_activations(bf16_isa, rng, name, function, reference):
    x = bf16_values(rng, (4, 3, 34), scale=3.0)
    ours = function(as_bf16(x))
    expected = reference(x)
    # elementwise ops: each result is measured against its own magnitude
    assert ours.dtype == bf16
    np.testing.assert_array_equal(widened(ours), widened(function(as_f32(x)).to(bf16)))
    assert np.all(np.abs(widened(ours) - expected) <= BFLOAT16_RESULT_RTOL * np.abs(expected) + 2.0**-126)


def test_embedding_copies_rows_exactly(bf16_isa, rng):
    table = bf16_values(rng, (50, 12))
    ids = rng.integers(0, 50, size=(3, 7))
    for id_dtype in (np.int64, np.int32):
        ours = F.embedding(attnkit.tensor(ids.astype(id_dtype)), as_bf16(table))
        assert ours.dtype == bf16
        np.testing.assert_array_equal(widened(ours), table[ids])


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope(bf16_isa, rng, interleaved):
    x = bf16_values(rng, (2, 9, 3, 16))
    ours = F.rope(as_bf16(x), offset=5, interleaved=interleaved)
    float32_result = F.rope(as_f32(x), offset=5, interleaved=interleaved)
    check(ours, float32_result, ref_position.rope(x, 5, 10000.0, interleaved))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(bf16_isa, rng, reduction):
    logits = bf16_values(rng, (9, 101), scale=4.0)
    targets = rng.integers(0, 101, size=9)
    targets[2] = -100
    t = attnkit.tensor(targets)
    ours = F.cross_entropy(as_bf16(logits), t, reduction=reduction)
    expected = ref_loss.cross_entropy(logits, targets, reduction=reduction)
    float32_result = F.cross_entropy(as_f32(logits), t, reduction=reduction)
    if reduction == "none":
        assert ours.dtype == bf16
        np.testing.assert_array_equal(widened(ours), widened(float32_result.to(bf16)))
        # a loss row is a difference (log-sum-exp - target logit): measured
        # against the row's largest term, |logits| included
        scale = np.abs(expected) + np.abs(logits).max(axis=1)
        assert np.all(np.abs(widened(ours) - expected) <= BFLOAT16_RESULT_RTOL * scale)
    else:
        check(ours, float32_result, expected)


@pytest.mark.parametrize(
    "batch, tq, tk, heads, kv_heads, head_dim, causal",
    [(1, 1, 300, 4, 2, 64, True), (2, 50, 50, 2, 2, 16, True), (1, 17, 33, 3, 1, 8, False)],
)
def test_attention(bf16_isa, rng, batch, tq, tk, heads, kv_heads, head_dim, causal):
    q = bf16_values(rng, (batch, tq, heads, head_dim))
    k = bf16_values(rng, (batch, tk, kv_heads, head_dim))
    v = bf16_values(rng, (batch, tk, kv_heads, head_dim))
    ours = F.attention(as_bf16(q), as_bf16(k), as_bf16(v), causal=causal)
    float32_result = F.attention(as_f32(q), as_f32(k), as_f32(v), causal=causal)
    visible = attention_visibility(batch, tq, tk, causal=causal)
    probabilities = attention_probabilities(q, k, visible)
    group = heads // kv_heads
    values = np.repeat(v, group, axis=2).transpose(0, 2, 1, 3)  # [B, H, Tk, D]
    expected = (probabilities @ values).transpose(0, 2, 1, 3)
    check(ours, float32_result, expected)


def test_attention_qkv(bf16_isa, rng):
    qkv = bf16_values(rng, (2, 20, (4 + 2 * 2) * 8))
    ours = F.attention_qkv(as_bf16(qkv), 4, num_kv_heads=2, causal=True)
    float32_result = F.attention_qkv(as_f32(qkv), 4, num_kv_heads=2, causal=True)
    assert ours.dtype == bf16
    np.testing.assert_array_equal(widened(ours), widened(float32_result.to(bf16)))


def test_linear_elementwise_and_reductions(bf16_isa, rng):
    x, w, b = bf16_values(rng, (5, 24)), bf16_values(rng, (7, 24)), bf16_values(rng, (7,))
    ours = F.linear(as_bf16(x), as_bf16(w), as_bf16(b), activation="gelu")
    assert ours.dtype == bf16
    # the bf16 GEMM's float32 result (+ bias, gelu) rounded once: the float32
    # sums' error (k + 1 terms, each within 2**-24 of sum |x| |w| + |b|),
    # through gelu (slope below 1.13), plus the one rounding
    expected = ref_activation.gelu(x @ w.T + b)
    sums = (24 + 1) * 2.0**-24 * (np.abs(x) @ np.abs(w).T + np.abs(b))
    bound = BFLOAT16_RESULT_RTOL * (np.abs(expected) + 1.13 * sums) + 1.13 * sums
    assert np.all(np.abs(widened(ours) - expected) <= bound)
    a, c = bf16_values(rng, (3, 8)), bf16_values(rng, (8,))
    for op in (operator.add, operator.sub, operator.mul, operator.truediv):
        ours = op(as_bf16(a), as_bf16(c))  # the tensor's operators
        expected = op(a, c)
        assert ours.dtype == bf16
        assert np.all(np.abs(widened(ours) - expected) <= BFLOAT16_RESULT_RTOL * np.abs(expected))
    total = as_bf16(a).sum(dim=-1)
    assert total.dtype == bf16
    np.testing.assert_array_equal(widened(total), widened(as_f32(a).sum(dim=-1).to(bf16)))
    mean = as_bf16(a).mean(dim=-1)
    np.testing.assert_array_equal(widened(mean), widened(as_f32(a).mean(dim=-1).to(bf16)))
    scaled = as_bf16(a) * 0.5 + 1.0
    assert scaled.dtype == bf16
    np.testing.assert_array_equal(widened(scaled), widened((as_f32(a) * 0.5 + 1.0).to(bf16)))


def test_mixing_float32_and_bfloat16_is_refused_by_name(rng):
    x = bf16_values(rng, (3, 8))
    w = bf16_values(rng, (8,))
    with pytest.raises(TypeError, match=r"layer_norm: argument 'weight' expected bfloat16 \(the dtype of 'x'"):
        F.layer_norm(as_bf16(x), (8,), as_f32(w))
    with pytest.raises(TypeError, match=r"rms_norm: argument 'weight' expected float32 \(the dtype of 'x'"):
        F.rms_norm(as_f32(x), (8,), as_bf16(w))
    with pytest.raises(TypeError, match=r"add: argument 'other' expected bfloat16 \(the dtype of 'input'"):
        as_bf16(x) + as_f32(x)
    q = as_bf16(bf16_values(rng, (1, 4, 2, 8)))
    with pytest.raises(TypeError, match=r"attention: argument 'v' expected bfloat16 \(the dtype of 'q'"):
        F.attention(q, q, q.float())
    with pytest.raises(TypeError, match="linear: argument 'weight' expected bfloat16"):
        F.linear(as_bf16(x), as_f32(bf16_values(rng, (5, 8))))
    with pytest.raises(TypeError, match="float32 or bfloat16, got float16"):
        F.gelu(attnkit.tensor(x.astype(np.float32)).to(attnkit.float16))


def test_backward_through_a_bfloat16_op_is_refused():
    linear = attnkit.nn.Linear(8, 3).to(bf16)
    assert linear.weight.requires_grad and linear.weight.dtype == bf16
    x = attnkit.tensor(np.ones((2, 8), np.float32)).to(bf16)
    y = linear(x)
    with pytest.raises(RuntimeError, match="attnkit computes no gradient in bfloat16"):
        y.backward(attnkit.ones(2, 3, dtype=bf16))
    assert linear.weight.grad is None
    with pytest.raises(TypeError, match="dropout: argument 'input' expected float32 when training"):
        F.dropout(x, 0.1, training=True)
    assert F.dropout(x, 0.1, training=False) is x


@pytest.mark.parametrize("m", [1, 3, 16, 17])
@pytest.mark.parametrize("n, k", [(1, 37), (5, 300), (130, 777)])
def test_linear_decode_rows(bf16_isa, rng, m, n, k):
    """Up to 16 rows take the decode path (the bf16 weight rows read once,
    widened in L1: exact products, float32 sums); 17 the blocked GEMM."""
    x, w, b = bf16_values(rng, (m, k)), bf16_values(rng, (n, k)), bf16_values(rng, (n,))
    ours = F.linear(as_bf16(x), as_bf16(w), as_bf16(b))
    expected = x @ w.T + b
    sums = (k + 1) * 2.0**-24 * (np.abs(x) @ np.abs(w).T + np.abs(b))
    bound = BFLOAT16_RESULT_RTOL * (np.abs(expected) + sums) + sums
    assert ours.dtype == bf16 and ours.shape == (m, n)
    assert np.all(np.abs(widened(ours) - expected) <= bound)
    # float32 results (autocast's products) on the same path: no rounding
    out = attnkit._C.matmul(as_bf16(x)._array, as_bf16(w)._array, transpose_b=True, out_dtype="float32")[0]
    assert np.all(np.abs(np.asarray(out, np.float64) - (x @ w.T)) <= k * 2.0**-24 * (np.abs(x) @ np.abs(w).T))
