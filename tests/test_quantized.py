"""int8 weights (attnkit.quantize): the quantization itself, the int8 linear
kernel on every ISA (decode path and dequantized blocks) against a float64
product with the dequantized weight, gradients, modules, models, save/load."""

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close

import attnkit
import attnkit.nn.functional as F
from attnkit import nn
from attnkit.nn.functional import quantized as F_quantized
from attnkit.nn.functional.quantized import dequantize_int8, quantize_int8


def quantized(rng, n, k):
    """A random weight's int8 values and scales, and the exact dequantized
    weight (float64)."""
    weight = rng.standard_normal((n, k)).astype(np.float32)
    q, scales = quantize_int8(attnkit.from_numpy(weight))
    exact = q.numpy().astype(np.float64) * scales.numpy().astype(np.float64)[:, None]
    return q, scales, exact


def check_linear(rng, m, k, n, bias=False, activation=None):
    q, scales, exact = quantized(rng, n, k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    out = F.linear_int8(
        attnkit.from_numpy(x), q, scales, None if b is None else attnkit.from_numpy(b), activation=activation
    )
    expected = reference.matmul(x, exact.T)
    # The plain float32 yardstick: the dequantized weight rounded to float32
    # once, then summed one k at a time.
    naive = reference.matmul_naive_float32(x, exact.T.astype(np.float32))
    if b is None and activation is None:
        assert_reduction_close(out.numpy(), expected, naive)
        return
    # With the epilogue: the product checked through the pre-activation.
    pre = expected + (0 if b is None else b)
    if activation is None:
        assert_reduction_close(out.numpy() - (0 if b is None else b), expected, naive)
    else:
        activated = reference.relu(pre) if activation == "relu" else reference.gelu(pre, approximate="tanh")
        error = np.max(np.abs(naive - expected)) + np.spacing(np.float32(np.max(np.abs(pre))))
        # The activation's slope is at most ~1.13 (tanh GELU): twice the product's error bounds it.
        assert np.max(np.abs(out.numpy() - activated)) <= 2.0 * 1.13 * error + 1e-6 * np.max(np.abs(activated))


def test_quantization_is_symmetric_per_row_and_nearest(rng):
    weight = rng.standard_normal((37, 53)).astype(np.float32) * rng.uniform(0.01, 10, (37, 1)).astype(np.float32)
    weight[5] = 0.0  # a row of zeros: scale 0, values 0
    q, scales = quantize_int8(attnkit.from_numpy(weight))
    assert q.dtype == attnkit.int8 and scales.dtype == attnkit.float32
    q, s = q.numpy().astype(np.int64), scales.numpy()
    assert s[5] == 0 and not q[5].any()
    rows = [r for r in range(37) if r != 5]
    np.testing.assert_array_equal(np.abs(q[rows]).max(axis=1), 127)  # the largest magnitude maps to 127
    assert np.abs(q).max() <= 127
    np.testing.assert_allclose(s[rows], np.abs(weight[rows]).max(axis=1) / 127, rtol=2**-23)
    # each value is the nearest grid point: within half a step of the weight
    step = s[rows, None].astype(np.float64)
    assert np.all(np.abs(q[rows] * step - weight[rows]) <= 0.5 * step * (1 + 2**-20))


def test_quantization_refuses_non_finite_weights():
    weight = np.ones((3, 4), np.float32)
    weight[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        quantize_int8(attnkit.from_numpy(weight))


def test_dequantize_is_one_rounding_of_the_exact_product(cpu_isa, rng):
    for n, k in ((1, 1), (5, 17), (33, 100), (4, 1000)):
        q, scales, exact = quantized(rng, n, k)
        np.testing.assert_array_equal(dequantize_int8(q, scales).numpy(), exact.astype(np.float32))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 13, 16, 17, 40])
def test_linear_every_row_count(cpu_isa, rng, m):
    # 1-16 rows: the decode path (int8 read, widened in registers); 17 on:
    # dequantized blocks on the fp32 GEMM. K and N with tails at every width.
    for k, n in ((37, 333), (768, 130), (1, 5), (16, 4), (100, 7)):
        check_linear(rng, m, k, n)


@pytest.mark.parametrize("thread_count", [1, 2])
def test_linear_threads(cpu_isa, rng, threads, thread_count):
    threads(thread_count)
    for m in (1, 7, 16, 29):
        check_linear(rng, m, 300, 1261)


@pytest.mark.parametrize("activation", [None, "relu", "gelu_tanh"])
@pytest.mark.parametrize("m", [1, 6, 33])
def test_linear_bias_and_activation(cpu_isa, rng, m, activation):
    check_linear(rng, m, 45, 77, bias=True, activation=activation)


def test_linear_blocks_of_many_weight_rows(cpu_isa, rng):
    # More weight rows than one dequantized block (1 MiB floats / K rows).
    check_linear(rng, 20, 16, 70000)


def test_linear_batched_input_and_degenerate_sizes(rng):
    q, scales, exact = quantized(rng, 9, 12)
    x = rng.standard_normal((2, 3, 12)).astype(np.float32)
    out = F.linear_int8(attnkit.from_numpy(x), q, scales)
    assert out.shape == (2, 3, 9)
    assert_reduction_close(out.numpy(), x @ exact.T, reference.matmul_naive_float32(x, exact.T.astype(np.float32)))
    one = F.linear_int8(attnkit.from_numpy(x[0, 0]), q, scales)
    assert one.shape == (9,)
    empty = F.linear_int8(attnkit.zeros(0, 12), q, scales)
    assert empty.shape == (0, 9)
    q0, s0 = quantize_int8(np.zeros((4, 0), np.float32))
    np.testing.assert_array_equal(F.linear_int8(attnkit.zeros(3, 0), q0, s0).numpy(), np.zeros((3, 4)))


def test_linear_gradients_reach_input_and_bias(rng):
    q, scales, exact = quantized(rng, 6, 5)
    x = attnkit.tensor(rng.standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    b = attnkit.tensor(rng.standard_normal(6).astype(np.float32), requires_grad=True)
    upstream = rng.standard_normal((4, 6)).astype(np.float32)
    out = F.linear_int8(x, q, scales, b, activation="relu")
    (out * attnkit.from_numpy(upstream)).sum().backward()
    pre = x.detach().numpy().astype(np.float64) @ exact.T + b.detach().numpy()
    grad_pre = upstream * (pre > 0)
    np.testing.assert_allclose(x.grad.numpy(), grad_pre @ exact, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), grad_pre.sum(axis=0), rtol=1e-5, atol=1e-6)


def test_linear_bad_arguments(rng):
    q, scales, _ = quantized(rng, 4, 8)
    x = attnkit.ones(2, 8)
    with pytest.raises(ValueError, match="linear_int8: argument 'x' expected a last dimension of 8"):
        F.linear_int8(attnkit.ones(2, 7), q, scales)
    with pytest.raises(TypeError, match="linear_int8: argument 'weight' expected dtype int8"):
        F.linear_int8(x, attnkit.ones(4, 8), scales)
    with pytest.raises(ValueError, match="linear_int8: argument 'scales' expected shape \\[4\\]"):
        F.linear_int8(x, q, attnkit.ones(5))
    with pytest.raises(ValueError, match="linear_int8: argument 'bias' expected shape \\[4\\]"):
        F.linear_int8(x, q, scales, attnkit.ones(3))
    with pytest.raises(ValueError, match="argument 'weight' expected 2 dimensions"):
        attnkit._C.linear_int8(x._array, attnkit.from_numpy(np.zeros(8, np.int8))._array, scales._array)
    with pytest.raises(ValueError, match="linear_int8: argument 'activation'"):
        F.linear_int8(x, q, scales, activation="tanh")


def test_quantized_linear_module_replaces_linear(rng):
    attnkit.manual_seed(3)
    linear = nn.Linear(20, 12, activation="gelu_tanh")
    module = nn.QuantizedLinear.from_linear(linear)
    assert module.bias is linear.bias and module.activation == "gelu_tanh"
    assert sorted(module.state_dict()) == ["bias", "scales", "weight"]
    x = attnkit.from_numpy(rng.standard_normal((3, 20)).astype(np.float32))
    with attnkit.no_grad():
        ours, theirs = module(x).numpy(), linear(x).numpy()
    # int8 rounding: each weight within half a step (max|row| / 254) of the float one
    assert np.max(np.abs(ours - theirs)) < 0.05 * np.max(np.abs(theirs))
    assert "int8" in repr(module)


def tiny_gpt(tie=True):
    attnkit.manual_seed(0)
    config = attnkit.models.GPTConfig(
        vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0, tie_embeddings=tie
    )
    return attnkit.models.GPT(config)


@pytest.mark.parametrize("tie", [True, False])
def test_quantize_gpt_swaps_every_linear_and_the_tied_head(rng, tie):
    model = tiny_gpt(tie)
    ids = attnkit.from_numpy(rng.integers(0, 50, (2, 9)).astype(np.int64))
    with attnkit.no_grad():
        before = model(ids).numpy()
    assert attnkit.quantize(model, "int8") is model
    assert not any(type(m) is nn.Linear for m in model.modules())
    assert isinstance(model.lm_head, nn.QuantizedLinear)
    with attnkit.no_grad():
        after = model(ids).numpy()
    assert np.max(np.abs(after - before)) < 0.02 * np.max(np.abs(before))
    # cached decoding equals the full forward
    generated = model.generate(ids[:1, :4], 5, temperature=0.0)
    full = attnkit.tensor(generated.numpy()[:, :-1])
    with attnkit.no_grad():
        greedy = model(full).numpy()[0, 3:].argmax(axis=-1)
    np.testing.assert_array_equal(generated.numpy()[0, 4:], greedy)


def test_quantize_bad_arguments():
    with pytest.raises(ValueError, match="quantize: argument 'scheme' expected one of int8"):
        attnkit.quantize(tiny_gpt(), "int4")
    with pytest.raises(TypeError, match="quantize: argument 'model'"):
        attnkit.quantize(object(), "int8")


def test_quantized_gpt_saves_and_loads_bit_for_bit(tmp_path, rng):
    model = attnkit.quantize(tiny_gpt(), "int8")
    path = tmp_path / "int8.safetensors"
    attnkit.save(model.state_dict(), path)
    other = tiny_gpt()
    with attnkit.no_grad():
        for p in other.parameters():
            p.fill_(0.5)  # a different model until loaded
    attnkit.quantize(other, "int8")
    other.load_state_dict(attnkit.load(path))
    assert list(model.state_dict()) == list(other.state_dict())
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    ids = attnkit.from_numpy(rng.integers(0, 50, (1, 7)).astype(np.int64))
    with attnkit.no_grad():
        np.testing.assert_array_equal(model(ids).numpy(), other(ids).numpy())


def test_corrupt_quantized_file_is_refused_whole(tmp_path):
    model = attnkit.quantize(tiny_gpt(), "int8")
    path = tmp_path / "int8.safetensors"
    attnkit.save(model.state_dict(), path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-100])
    with pytest.raises(ValueError):
        attnkit.load(truncated)
    # an int8 entry whose header claims a float32 weight: its byte range no longer fits
    header_length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + header_length].decode()
    assert '"I8"' in header
    bad = tmp_path / "bad_dtype.safetensors"
    bad.write_bytes(data[:8] + header.replace('"I8"', '"F32"', 1).encode() + data[8 + header_length :])
    with pytest.raises(ValueError):
        attnkit.load(bad)


def test_float_weights_are_not_loaded_into_int8_ones(tmp_path):
    float_state = tiny_gpt().state_dict()
    model = attnkit.quantize(tiny_gpt(), "int8")
    with pytest.raises(ValueError, match="dtype mismatches.*int8"):
        model.load_state_dict({**float_state, **{k: v for k, v in model.state_dict().items() if "scales" in k}})


# ---- dynamic activation quantization (int8 x int8, AVX512-VNNI) ------------


def dynamic_reference(x, q, scales):
    """The exact product of the quantized operands, as the kernel defines
    them: per row xs = max|x| / 127 (float32), xq = round(x / xs) (nearest,
    ties to even), then xs[i] * scales[j] * (xq @ q.T)[i, j] in float64."""
    x = np.asarray(x, np.float32)
    xs = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(xs > 0, xs, np.float32(1))
    xq = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int64)
    dots = xq @ q.numpy().astype(np.int64).T  # exact in integers
    return dots * xs.astype(np.float64)[:, None] * scales.numpy().astype(np.float64)[None, :]


@pytest.mark.parametrize("m", [1, 8, 17, 45, 300])
def test_dynamic_is_the_exact_product_of_the_quantized_operands(bf16_isa, rng, m):
    for k, n in ((1, 1), (5, 33), (64, 100), (385, 70)):
        q, scales, _ = quantized(rng, n, k)
        packed, row_sums = F_quantized.pack_int8_dynamic(q)
        x = rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.1, 10, (m, 1)).astype(np.float32)
        x[0] = 0.0  # a zero row: scale 0, output 0
        if not F_quantized.int8_dynamic_available():
            with pytest.raises(RuntimeError, match="no int8 dot products"):
                F_quantized.linear_int8_dynamic(attnkit.from_numpy(x), packed, row_sums, scales)
            continue
        out = F_quantized.linear_int8_dynamic(attnkit.from_numpy(x), packed, row_sums, scales).numpy()
        expected = dynamic_reference(x, q, scales)
        # exact int32 dot products; then one rounding each of the int32, of
        # xs * scale and of the product: 3 float32 roundings
        assert_elementwise_close(out, expected, scale=np.abs(expected) * 3 / 8 + 1e-30)


def test_dynamic_epilogue_and_batched_input(rng):
    if not F_quantized.int8_dynamic_available():
        pytest.skip("this CPU has no AVX512-VNNI")
    q, scales, _ = quantized(rng, 40, 24)
    packed, row_sums = F_quantized.pack_int8_dynamic(q)
    x = rng.standard_normal((3, 20, 24)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    out = F_quantized.linear_int8_dynamic(
        attnkit.from_numpy(x), packed, row_sums, scales, attnkit.from_numpy(b), activation="relu"
    )
    assert out.shape == (3, 20, 40)
    expected = np.maximum(dynamic_reference(x.reshape(60, 24), q, scales) + b, 0).reshape(3, 20, 40)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_dynamic_bad_arguments(rng):
    q, scales, _ = quantized(rng, 4, 8)
    packed, row_sums = F_quantized.pack_int8_dynamic(q)
    with pytest.raises(ValueError, match="linear_int8_dynamic: argument 'packed' expected shape"):
        F_quantized.linear_int8_dynamic(attnkit.ones(20, 12), packed, row_sums, scales)
    with pytest.raises(ValueError, match="linear_int8_dynamic: argument 'row_sums' expected shape \\[4\\]"):
        F_quantized.linear_int8_dynamic(attnkit.ones(20, 8), packed, attnkit.zeros(5, dtype=attnkit.int32), scales)
    with pytest.raises(RuntimeError, match="inference only"):
        F_quantized.linear_int8_dynamic(attnkit.ones(20, 8, requires_grad=True), packed, row_sums, scales)


def test_dynamic_module_falls_back_where_it_does_not_apply(bf16_isa, rng):
    attnkit.manual_seed(1)
    module = nn.QuantizedLinear.from_linear(nn.Linear(24, 40)).enable_dynamic_activations()
    assert "dynamic_activations=True" in repr(module)
    assert sorted(module.state_dict()) == ["bias", "scales", "weight"]  # the packing is not saved
    few = attnkit.from_numpy(rng.standard_normal((16, 24)).astype(np.float32))
    many = attnkit.from_numpy(rng.standard_normal((30, 24)).astype(np.float32))
    with attnkit.no_grad():
        weight_only = [F.linear_int8(x, module.weight, module.scales, module.bias).numpy() for x in (few, many)]
        ours = [module(x).numpy() for x in (few, many)]
    np.testing.assert_array_equal(ours[0], weight_only[0])  # 16 rows: the decode path
    if F_quantized.int8_dynamic_available():
        assert not np.array_equal(ours[1], weight_only[1])
        assert np.max(np.abs(ours[1] - weight_only[1])) < 0.05 * np.max(np.abs(weight_only[1]))
    else:
        np.testing.assert_array_equal(ours[1], weight_only[1])
