"""nn.MultiHeadAttention and nn.KVCache against a numpy reference of the same
module, evaluated in float64 (the expected result) and plainly in float32
(the naive result that sets the tolerance, conftest's assert_reduction_close)."""

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close
from model_check import reference_attention

import attnkit
import attnkit.nn.functional as F
from attnkit import nn

# These tests seed the default generator: restore its state after each one.
pytestmark = pytest.mark.usefixtures("keep_default_generator")


# id(parameter) -> a float64 array the references read in its place, so that
# finite differences can perturb the weights in float64.
PARAMETER_VALUES = {}


def numpy_or_none(t):
    """The parameter's values as float64 numpy (None for None)."""
    if t is None:
        return None
    return PARAMETER_VALUES.get(id(t), np.asarray(t.detach().numpy(), np.float64))


def check_gradients_by_finite_differences(module, run_module, run_reference, inputs, rng):
    """The module's gradients of sum(output * weights), for every parameter
    and every float input, against central differences of the float64
    reference ``run_reference(*inputs)`` (which reads the parameters through
    PARAMETER_VALUES). Step 1e-6: the differences are exact to about 1e-10,
    far below float32 rounding, which is what remains.

    Scale: the largest gradient, not each entry's own magnitude. An entry is
    a sum of terms of either sign (over positions, heads, features), so a
    small entry is a difference of larger terms; its float32 rounding is
    relative to those terms, which the largest gradient bounds at these tiny,
    well-conditioned sizes."""
    tensors = [
        attnkit.from_numpy(x).requires_grad_() if x.dtype == np.float32 else attnkit.from_numpy(x) for x in inputs
    ]
    output = run_module(module, *tensors)
    output_weights = rng.standard_normal(output.shape)
    (output * attnkit.from_numpy(output_weights.astype(np.float32))).sum().backward()

    float64_inputs = [x.astype(np.float64) if x.dtype == np.float32 else x for x in inputs]
    arrays = {}
    for name, parameter in module.named_parameters():
        arrays[name] = PARAMETER_VALUES[id(parameter)] = np.asarray(parameter.detach().numpy(), np.float64)
    for index, x in enumerate(float64_inputs):
        if x.dtype == np.float64:
            arrays[f"input {index}"] = x
    try:
        expected = reference.central_differences(
            arrays, lambda: np.sum(run_reference(*float64_inputs) * output_weights)
        )
    finally:
        PARAMETER_VALUES.clear()
    actual = {name: parameter.grad for name, parameter in module.named_parameters()}
    actual.update({f"input {i}": t.grad for i, t in enumerate(tensors) if t.requires_grad})
    largest = max(np.abs(g).max() for g in expected.values())
    assert largest > 0
    for name, gradient in expected.items():
        assert actual[name] is not None, name
        assert_elementwise_close(actual[name].numpy(), gradient, scale=largest)


def projection_weights(module):
    """(w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o) of the module as float64 numpy
    (biases None without bias)."""
    query_width = module.num_heads * module.head_dim
    kv_width = module.num_kv_heads * module.head_dim

    if module.qkv_fused:
        w, b = numpy_or_none(module.qkv_proj.weight), numpy_or_none(module.qkv_proj.bias)
        cuts = [query_width, query_width + kv_width]
        ws = np.split(w, cuts)
        bs = np.split(b, cuts) if b is not None else [None] * 3
    else:
        w_kv, b_kv = numpy_or_none(module.kv_proj.weight), numpy_or_none(module.kv_proj.bias)
        ws = [numpy_or_none(module.q_proj.weight), *np.split(w_kv, 2)]
        bs = [numpy_or_none(module.q_proj.bias), *(np.split(b_kv, 2) if b_kv is not None else [None, None])]
    return (
        ws[0],
        bs[0],
        ws[1],
        bs[1],
        ws[2],
        bs[2],
        numpy_or_none(module.out_proj.weight),
        numpy_or_none(module.out_proj.bias),
    )


def mha_reference(module, x, key_value=None, causal=False, key_padding_mask=None, dtype=np.float64):
    """The module's forward in numpy, every step in ``dtype``."""
    w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o = (
        None if a is None else a.astype(dtype) for a in projection_weights(module)
    )
    x = np.asarray(x, dtype)
    source = x if key_value is None else np.asarray(key_value, dtype)
    batch, steps, _ = x.shape
    source_steps = source.shape[1]
    H, Hkv, D = module.num_heads, module.num_kv_heads, module.head_dim

    def project(inputs, w, b):
        out = inputs @ w.T
        return out if b is None else out + b

    q = project(x, w_q, b_q).reshape(batch, steps, H, D)
    k = project(source, w_k, b_k).reshape(batch, source_steps, Hkv, D)
    v = project(source, w_v, b_v).reshape(batch, source_steps, Hkv, D)
    if module.rope:
        q = reference.rope(q, 0, module.rope_base, True).astype(dtype)
        k = reference.rope(k, 0, module.rope_base, True).astype(dtype)
    group = H // Hkv
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    visible = reference.attention_visibility(
        batch, steps, source_steps, causal=causal, key_padding_mask=key_padding_mask
    )
    return project(reference_attention(q, k, v, visible, dtype), w_o, b_o)


def check_against_reference(module, x, **kwargs):
    actual = module(
        attnkit.from_numpy(x),
        **{k: attnkit.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
    )
    assert actual.shape == x.shape
    assert_reduction_close(
        actual.detach().numpy(),
        mha_reference(module, x, **kwargs),
        mha_reference(module, x, dtype=np.float32, **kwargs),
    )


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 4), (4, 2), (4, 1), (1, 1)])
@pytest.mark.parametrize("qkv_fused", [True, False])
def test_self_attention_matches_reference(cpu_isa, rng, num_heads, num_kv_heads, qkv_fused):
    attnkit.manual_seed(0)
    module = nn.MultiHeadAttention(24, num_heads, num_kv_heads, qkv_fused=qkv_fused)
    x = rng.standard_normal((2, 17, 24)).astype(np.float32)
    check_against_reference(module, x)
    check_against_reference(module, x, causal=True)


@pytest.mark.parametrize("qkv_fused", [True, False])
def test_cross_attention_with_padding_matches_reference(cpu_isa, rng, qkv_fused):
    attnkit.manual_seed(1)
    module = nn.MultiHeadAttention(16, 4, 2, bias=False, qkv_fused=qkv_fused)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)
    memory = rng.standard_normal((3, 7, 16)).astype(np.float32)
    padding = np.zeros((3, 7), bool)
    padding[1, 4:] = True
    padding[2, 1:] = True
    check_against_reference(module, x, key_value=memory, key_padding_mask=padding)


def test_rope_matches_reference(cpu_isa, rng):
    attnkit.manual_seed(2)
    module = nn.MultiHeadAttention(32, 4, 2, rope=True, rope_base=500.0)
    x = rng.standard_normal((2, 9, 32)).astype(np.float32)
    check_against_reference(module, x, causal=True)


def test_fused_layout_shapes():
    module = nn.MultiHeadAttention(24, 6, 2)
    # rows: 6 query heads, then 2 key heads and 2 value heads, of size 4
    assert module.qkv_proj.weight.shape == ((6 + 2 * 2) * 4, 24)
    assert module.out_proj.weight.shape == (24, 24)
    separate = nn.MultiHeadAttention(24, 6, 2, qkv_fused=False)
    assert separate.q_proj.weight.shape == (24, 24)
    assert separate.kv_proj.weight.shape == (2 * 2 * 4, 24)


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("num_kv_heads", [4, 1])
def test_cached_decoding_equals_full_sequence(cpu_isa, rng, rope, num_kv_heads):
    """A prompt of 5 positions, then one position at a time through the
    cache: every output row matches the whole sequence run causally."""
    attnkit.manual_seed(3)
    module = nn.MultiHeadAttention(32, 4, num_kv_heads, rope=rope)
    module.eval()
    x = rng.standard_normal((2, 12, 32)).astype(np.float32)
    cache = module.make_cache(batch=2, max_len=16)
    with attnkit.no_grad():
        pieces = [module(attnkit.from_numpy(x[:, :5].copy()), cache=cache).numpy()]
        for t in range(5, 12):
            pieces.append(module(attnkit.from_numpy(x[:, t : t + 1].copy()), cache=cache).numpy())
    assert cache.length == 12
    cached = np.concatenate(pieces, axis=1)
    assert_reduction_close(
        cached, mha_reference(module, x, causal=True), mha_reference(module, x, causal=True, dtype=np.float32)
    )


def test_kv_cache_update_and_bounds(rng):
    cache = nn.KVCache(1, 4, 2, 3)
    k = rng.standard_normal((1, 3, 2, 3)).astype(np.float32)
    v = rng.standard_normal((1, 3, 2, 3)).astype(np.float32)
    keys, values = cache.update(attnkit.from_numpy(k), attnkit.from_numpy(v))
    np.testing.assert_array_equal(keys.numpy(), k)
    np.testing.assert_array_equal(values.numpy(), v)
    keys, _ = cache.update(attnkit.from_numpy(k[:, :1].copy()), attnkit.from_numpy(v[:, :1].copy()))
    np.testing.assert_array_equal(keys.numpy(), np.concatenate([k, k[:, :1]], axis=1))
    with pytest.raises(ValueError, match="max_len"):
        cache.update(attnkit.from_numpy(k[:, :1].copy()), attnkit.from_numpy(v[:, :1].copy()))
    cache.reset()
    assert cache.length == 0
    with pytest.raises(ValueError, match="k_new"):
        cache.update(
            attnkit.from_numpy(np.zeros((1, 1, 3, 3), np.float32)),
            attnkit.from_numpy(np.zeros((1, 1, 3, 3), np.float32)),
        )


def test_cache_refuses_gradients():
    module = nn.MultiHeadAttention(8, 2)
    cache = module.make_cache(1, 4)
    with pytest.raises(RuntimeError, match="no_grad"):
        module(attnkit.zeros(1, 2, 8), cache=cache)


@pytest.mark.parametrize("num_kv_heads, rope, cross", [(2, False, False), (1, True, False), (2, False, True)])
@pytest.mark.parametrize("qkv_fused", [True, False])
def test_gradients_match_finite_differences(cpu_isa, rng, num_kv_heads, rope, cross, qkv_fused):
    attnkit.manual_seed(5)
    module = nn.MultiHeadAttention(8, 2, num_kv_heads, rope=rope, qkv_fused=qkv_fused)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    if cross:
        memory = rng.standard_normal((2, 4, 8)).astype(np.float32)
        padding = np.array([[False, False, False, True], [False, False, False, False]])
        check_gradients_by_finite_differences(
            module,
            lambda m, x, memory, padding: m(x, key_value=memory, key_padding_mask=padding),
            lambda x, memory, padding: mha_reference(module, x, key_value=memory, key_padding_mask=padding),
            [x, memory, padding],
            rng,
        )
    else:
        check_gradients_by_finite_differences(
            module, lambda m, x: m(x, causal=True), lambda x: mha_reference(module, x, causal=True), [x], rng
        )


def test_backward_reaches_every_parameter(rng):
    attnkit.manual_seed(4)
    module = nn.MultiHeadAttention(16, 4, 2, qkv_fused=True)
    x = attnkit.from_numpy(rng.standard_normal((2, 3, 16)).astype(np.float32))
    memory = attnkit.from_numpy(rng.standard_normal((2, 5, 16)).astype(np.float32))
    module(x, key_value=memory).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert np.all(np.isfinite(parameter.grad.numpy())), name
        assert np.any(parameter.grad.numpy() != 0), name


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        nn.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="num_kv_heads"):
        nn.MultiHeadAttention(12, 4, 3)
    with pytest.raises(ValueError, match="rope"):
        nn.MultiHeadAttention(12, 4, rope=True)  # head_dim 3 is odd
    with pytest.raises(ValueError, match="dropout"):
        nn.MultiHeadAttention(8, 2, dropout=1.0)
    module = nn.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="'x'"):
        module(attnkit.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="key_value"):
        module(attnkit.zeros(1, 3, 8), key_value=attnkit.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="cache"):
        with attnkit.no_grad():
            module(attnkit.zeros(1, 3, 8), cache=nn.KVCache(1, 4, 1, 4))
    with pytest.raises(ValueError):
        module(attnkit.zeros(1, 3, 8), key_padding_mask=attnkit.zeros(1, 4, dtype=attnkit.bool))


@pytest.mark.parametrize("num_kv_heads", [4, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_self_attention_equals_the_split_projection(cpu_isa, rng, num_kv_heads, dropout):
    """Fused self-attention reads q, k, v in place from the projection
    (F.attention_qkv): bit for bit what splitting it and F.attention give,
    in the output and in every gradient."""
    attnkit.manual_seed(5)
    module = nn.MultiHeadAttention(32, 4, num_kv_heads, dropout=dropout)
    x = rng.standard_normal((3, 21, 32)).astype(np.float32)
    padding = rng.random((3, 21)) < 0.2
    grad_out = rng.standard_normal(x.shape).astype(np.float32)

    def split_path(x, key_padding_mask):
        width, kv_width = 32, num_kv_heads * 8
        q, k, v = F.split(module.qkv_proj(x), [width, kv_width, kv_width], dim=-1)
        out = F.attention(
            q.reshape(3, 21, 4, 8),
            k.reshape(3, 21, num_kv_heads, 8),
            v.reshape(3, 21, num_kv_heads, 8),
            causal=True,
            key_padding_mask=key_padding_mask,
            dropout_p=dropout,
        )
        return module.out_proj(out.reshape(3, 21, 32))

    results = []
    for forward in (lambda x, mask: module(x, causal=True, key_padding_mask=mask), split_path):
        module.zero_grad()
        attnkit.manual_seed(6)  # the same dropout stream for both
        inputs = attnkit.tensor(x, requires_grad=True)
        out = forward(inputs, attnkit.tensor(padding))
        out.backward(attnkit.tensor(grad_out))
        results.append(
            [out.detach().numpy(), inputs.grad.numpy()] + [p.grad.numpy() for _, p in module.named_parameters()]
        )
    for fused, split in zip(*results):
        np.testing.assert_array_equal(fused, split)


@pytest.mark.parametrize("batch, padded", [(1, False), (2, False), (2, True)])
def test_cached_decoding_within_a_sliding_window_equals_the_full_pass(cpu_isa, rng, batch, padded):
    """Decoding past the window (the cache then hands over its last
    ``window`` positions, not its whole buffer) gives the rows of the full
    windowed pass; with left padding too."""
    attnkit.manual_seed(4)
    module = nn.MultiHeadAttention(16, 4, 2, rope=True, rope_interleaved=False, window=3)
    module.eval()
    steps = 11
    x = rng.standard_normal((batch, steps, 16)).astype(np.float32)
    padding = np.zeros((batch, steps), bool)
    if padded:
        padding[1, :4] = True
    positions = np.maximum(np.arange(steps)[None, :] - padding.sum(axis=1, keepdims=True), 0)

    def full_pass():
        with attnkit.no_grad():
            return module(
                attnkit.from_numpy(x),
                causal=True,
                key_padding_mask=attnkit.from_numpy(padding),
                positions=attnkit.from_numpy(positions),
            ).numpy()

    full = full_pass()
    with attnkit.no_grad():
        cache = module.make_cache(batch, steps)
        pieces = [
            module(
                attnkit.from_numpy(x[:, :5].copy()),
                cache=cache,
                key_padding_mask=attnkit.from_numpy(padding[:, :5].copy()),
                positions=attnkit.from_numpy(positions[:, :5].copy()),
            ).numpy()
        ]
        for t in range(5, steps):
            pieces.append(
                module(
                    attnkit.from_numpy(x[:, t : t + 1].copy()),
                    cache=cache,
                    positions=attnkit.from_numpy(positions[:, t : t + 1].copy()),
                ).numpy()
            )
    real = ~padding
    np.testing.assert_allclose(np.concatenate(pieces, axis=1)[real], full[real], rtol=0, atol=1e-5)
    # the window is live: without it the last rows differ
    module.window = None
    assert np.abs(full_pass()[:, -1] - full[:, -1]).max() > 1e-3


def test_head_dim_and_separate_biases():
    module = nn.MultiHeadAttention(8, 4, 2, head_dim=6, bias=False, qkv_bias=True)
    assert module.qkv_proj.weight.shape == ((4 + 2 * 2) * 6, 8) and module.qkv_proj.bias is not None
    assert module.out_proj.weight.shape == (8, 24) and module.out_proj.bias is None
    assert module.make_cache(1, 5).k.shape == (1, 5, 2, 6)
    out = module(attnkit.zeros(2, 3, 8), causal=True)
    assert out.shape == (2, 3, 8)
    module = nn.MultiHeadAttention(8, 2, bias=True, out_bias=False)
    assert module.qkv_proj.bias is not None and module.out_proj.bias is None
    with pytest.raises(ValueError, match="argument 'positions' is for rope=True"):
        module(attnkit.zeros(1, 3, 8), positions=attnkit.zeros(1, 3, dtype=attnkit.int64))
    with pytest.raises(ValueError, match=r"argument 'window' expected an integer in \[1, 2\*\*63\), got 0"):
        nn.MultiHeadAttention(8, 2, window=0)
