"""nn.FeedForward and the Transformer encoder/decoder layers and stacks,
against numpy references of the same blocks evaluated in float64 (expected)
and plainly in float32 (the naive result that sets the tolerance)."""

import numpy as np
import pytest
import reference
from conftest import assert_reduction_close
from test_attention_module import check_gradients_by_finite_differences, mha_reference, numpy_or_none

import attnkit
from attnkit import nn
from attnkit.nn import functional as F

# These tests seed the default generator: restore its state after each one.
pytestmark = pytest.mark.usefixtures("keep_default_generator")


def as_numpy(t, dtype):
    values = numpy_or_none(t)  # float64, or the stand-in of a finite-difference step
    return None if values is None else values.astype(dtype)


def linear_reference(layer, x, dtype):
    out = x @ as_numpy(layer.weight, dtype).T
    return out if layer.bias is None else out + as_numpy(layer.bias, dtype)


def layer_norm_reference(norm, x, dtype):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out = (x - mean) / np.sqrt(variance + dtype(norm.eps)) * as_numpy(norm.weight, dtype)
    return out if norm.bias is None else out + as_numpy(norm.bias, dtype)


def feed_forward_reference(block, x, dtype):
    hidden = linear_reference(block.fc1, x, dtype)
    if block.activation == "swiglu":
        hidden = reference.swiglu(hidden)
    elif block.activation == "relu":
        hidden = reference.relu(hidden)
    else:
        hidden = reference.gelu(hidden, "tanh" if block.activation == "gelu_tanh" else "none")
    return linear_reference(block.fc2, np.asarray(hidden).astype(dtype), dtype)


def encoder_layer_reference(layer, x, dtype, causal=False, key_padding_mask=None):
    def attend(h):
        return mha_reference(layer.self_attn, h, causal=causal, key_padding_mask=key_padding_mask, dtype=dtype)

    if layer.norm_first:
        x = x + attend(layer_norm_reference(layer.norm1, x, dtype))
        return x + feed_forward_reference(layer.feed_forward, layer_norm_reference(layer.norm2, x, dtype), dtype)
    x = layer_norm_reference(layer.norm1, x + attend(x), dtype)
    return layer_norm_reference(layer.norm2, x + feed_forward_reference(layer.feed_forward, x, dtype), dtype)


def decoder_layer_reference(layer, x, memory, dtype, memory_key_padding_mask=None):
    def self_attend(h):
        return mha_reference(layer.self_attn, h, causal=True, dtype=dtype)

    def cross_attend(h):
        return mha_reference(
            layer.cross_attn, h, key_value=memory, key_padding_mask=memory_key_padding_mask, dtype=dtype
        )

    def feed_forward(h):
        return feed_forward_reference(layer.feed_forward, h, dtype)

    norm1, norm2, norm3 = (
        lambda h, n=n: layer_norm_reference(n, h, dtype) for n in (layer.norm1, layer.norm2, layer.norm3)
    )
    if layer.norm_first:
        x = x + self_attend(norm1(x))
        x = x + cross_attend(norm2(x))
        return x + feed_forward(norm3(x))
    x = norm1(x + self_attend(x))
    x = norm2(x + cross_attend(x))
    return norm3(x + feed_forward(x))


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "swiglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_feed_forward_matches_reference(cpu_isa, rng, activation, bias):
    attnkit.manual_seed(10)
    block = nn.FeedForward(12, 17, activation=activation, bias=bias)
    assert block.fc1.weight.shape == ((34 if activation == "swiglu" else 17), 12)
    x = rng.standard_normal((3, 5, 12)).astype(np.float32)
    actual = block(attnkit.from_numpy(x)).detach().numpy()
    assert_reduction_close(
        actual,
        feed_forward_reference(block, x.astype(np.float64), np.float64),
        feed_forward_reference(block, x, np.float32),
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_reference(cpu_isa, rng, norm_first):
    attnkit.manual_seed(11)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=24, dropout=0.1, norm_first=norm_first)
    layer.eval()  # dropout off
    x = rng.standard_normal((2, 7, 16)).astype(np.float32)
    padding = np.zeros((2, 7), bool)
    padding[1, 5:] = True
    actual = layer(attnkit.from_numpy(x), key_padding_mask=attnkit.from_numpy(padding)).detach().numpy()
    assert_reduction_close(
        actual,
        encoder_layer_reference(layer, x.astype(np.float64), np.float64, key_padding_mask=padding),
        encoder_layer_reference(layer, x, np.float32, key_padding_mask=padding),
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_reference(cpu_isa, rng, norm_first):
    attnkit.manual_seed(12)
    layer = nn.TransformerDecoderLayer(16, 2, dim_feedforward=20, dropout=0.0, activation="gelu", norm_first=norm_first)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    memory = rng.standard_normal((2, 9, 16)).astype(np.float32)
    padding = np.zeros((2, 9), bool)
    padding[0, 3:] = True
    actual = (
        layer(attnkit.from_numpy(x), attnkit.from_numpy(memory), memory_key_padding_mask=attnkit.from_numpy(padding))
        .detach()
        .numpy()
    )
    assert_reduction_close(
        actual,
        decoder_layer_reference(
            layer, x.astype(np.float64), memory.astype(np.float64), np.float64, memory_key_padding_mask=padding
        ),
        decoder_layer_reference(layer, x, memory, np.float32, memory_key_padding_mask=padding),
    )


@pytest.mark.parametrize("activation", ["relu", "gelu_tanh", "swiglu"])
def test_feed_forward_gradients_match_finite_differences(cpu_isa, rng, activation):
    attnkit.manual_seed(17)
    block = nn.FeedForward(6, 5, activation=activation)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    check_gradients_by_finite_differences(
        block, lambda m, x: m(x), lambda x: feed_forward_reference(block, x, np.float64), [x], rng
    )


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_gradients_match_finite_differences(cpu_isa, rng, norm_first):
    attnkit.manual_seed(18)
    encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, norm_first=norm_first)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    check_gradients_by_finite_differences(
        encoder,
        lambda m, x: m(x, causal=True),
        lambda x: encoder_layer_reference(encoder, x, np.float64, causal=True),
        [x],
        rng,
    )
    decoder = nn.TransformerDecoderLayer(
        8, 2, dim_feedforward=12, dropout=0.0, activation="gelu", norm_first=norm_first
    )
    memory = rng.standard_normal((2, 4, 8)).astype(np.float32)
    check_gradients_by_finite_differences(
        decoder,
        lambda m, x, memory: m(x, memory),
        lambda x, memory: decoder_layer_reference(decoder, x, memory, np.float64),
        [x, memory],
        rng,
    )


def test_stacks_and_final_norm(rng):
    encoder = nn.TransformerEncoder(2, 8, 2, dim_feedforward=16, norm_first=True)
    assert len(encoder.layers) == 2 and encoder.norm is not None
    assert nn.TransformerEncoder(2, 8, 2, norm_first=False).norm is None
    decoder = nn.TransformerDecoder(3, 8, 2, dim_feedforward=16, norm_first=False, norm=True)
    assert len(decoder.layers) == 3 and decoder.norm is not None
    encoder.eval()
    decoder.eval()
    x = attnkit.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32))
    memory = encoder(x)
    # the stack is its layers in order, then the final norm
    by_hand = encoder.norm(encoder.layers[1](encoder.layers[0](x)))
    np.testing.assert_array_equal(memory.detach().numpy(), by_hand.detach().numpy())
    target = attnkit.from_numpy(rng.standard_normal((2, 4, 8)).astype(np.float32))
    out = decoder(target, memory)
    assert out.shape == (2, 4, 8)


def test_decoder_cached_decoding_equals_full_sequence(cpu_isa, rng):
    attnkit.manual_seed(13)
    decoder = nn.TransformerDecoder(2, 16, 4, dim_feedforward=32, norm_first=True)
    decoder.eval()
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    memory = attnkit.from_numpy(rng.standard_normal((2, 5, 16)).astype(np.float32))
    with attnkit.no_grad():
        caches = decoder.make_caches(batch=2, max_len=6)
        steps = [decoder(attnkit.from_numpy(x[:, t : t + 1].copy()), memory, caches=caches).numpy() for t in range(6)]

    def stack_reference(dtype):
        h = x.astype(dtype)
        for layer in decoder.layers:
            h = decoder_layer_reference(layer, h, memory.numpy().astype(dtype), dtype)
        return layer_norm_reference(decoder.norm, h, dtype)

    assert_reduction_close(np.concatenate(steps, axis=1), stack_reference(np.float64), stack_reference(np.float32))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_trains(norm_first, rng):
    """Pre-LN and post-LN both fit a fixed batch (a learned map of the sequence)."""
    attnkit.manual_seed(14)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, norm_first=norm_first)
    x = attnkit.from_numpy(rng.standard_normal((4, 6, 16)).astype(np.float32))
    target = attnkit.from_numpy(rng.standard_normal((4, 6, 16)).astype(np.float32))
    optimizer = attnkit.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(60):
        difference = layer(x) - target
        loss = (difference * difference).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses


def test_backward_reaches_every_parameter(rng):
    attnkit.manual_seed(15)
    layer = nn.TransformerDecoderLayer(8, 2, dim_feedforward=12, dropout=0.0, activation="swiglu", norm_first=True)
    x = attnkit.from_numpy(rng.standard_normal((2, 3, 8)).astype(np.float32))
    memory = attnkit.from_numpy(rng.standard_normal((2, 4, 8)).astype(np.float32))
    F.mean(layer(x, memory) * layer(x, memory)).backward()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and np.any(parameter.grad.numpy() != 0), name


def test_dropout_only_in_training(rng):
    attnkit.manual_seed(16)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5)
    x = attnkit.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32))
    layer.eval()
    first, second = layer(x).detach().numpy(), layer(x).detach().numpy()
    np.testing.assert_array_equal(first, second)
    layer.train()
    assert np.any(layer(x).detach().numpy() != first)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        nn.FeedForward(8, 16, activation="tanh")
    with pytest.raises(TypeError, match="norm_first"):
        nn.TransformerEncoderLayer(8, 2, norm_first="yes")
    with pytest.raises(ValueError, match="num_layers"):
        nn.TransformerEncoder(0, 8, 2)
    decoder = nn.TransformerDecoder(2, 8, 2)
    with pytest.raises(ValueError, match="caches"):
        with attnkit.no_grad():
            decoder(attnkit.zeros(1, 1, 8), attnkit.zeros(1, 2, 8), caches=decoder.make_caches(1, 4)[:1])


@pytest.mark.parametrize("bias", [True, False])
def test_pre_ln_encoder_layer_fuses_the_residual_add_bit_for_bit(cpu_isa, rng, bias):
    """The pre-LN layer adds the attention output and normalizes the sum in
    one F.add_layer_norm: the same bits as the add and then norm2, in the
    output and in every gradient."""
    attnkit.manual_seed(7)
    layer = nn.TransformerEncoderLayer(
        32, 4, dim_feedforward=48, dropout=0.0, activation="gelu_tanh", norm_first=True, bias=bias
    )
    x = rng.standard_normal((3, 13, 32)).astype(np.float32)
    grad_out = rng.standard_normal(x.shape).astype(np.float32)

    def unfused(x):
        x = x + layer.dropout1(layer.self_attn(layer.norm1(x), causal=True))
        return x + layer.dropout2(layer.feed_forward(layer.norm2(x)))

    results = []
    for forward in (lambda x: layer(x, causal=True), unfused):
        layer.zero_grad()
        inputs = attnkit.tensor(x, requires_grad=True)
        out = forward(inputs)
        out.backward(attnkit.tensor(grad_out))
        results.append(
            [out.detach().numpy(), inputs.grad.numpy()] + [p.grad.numpy() for _, p in layer.named_parameters()]
        )
    for fused, plain in zip(*results):
        np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("bias", [True, False])
def test_pre_ln_decoder_layer_fuses_the_residual_adds_bit_for_bit(cpu_isa, rng, bias):
    """The pre-LN decoder layer fuses both residual adds with the next norm
    (norm2, norm3): the same bits as the adds and then the norms, in the
    output and in every gradient (memory's included)."""
    attnkit.manual_seed(8)
    layer = nn.TransformerDecoderLayer(32, 4, dim_feedforward=48, dropout=0.0, norm_first=True, bias=bias)
    x = rng.standard_normal((3, 11, 32)).astype(np.float32)
    memory = rng.standard_normal((3, 7, 32)).astype(np.float32)
    grad_out = rng.standard_normal(x.shape).astype(np.float32)

    def unfused(x, memory):
        x = x + layer.dropout1(layer.self_attn(layer.norm1(x), causal=True))
        x = x + layer.dropout2(layer.cross_attn(layer.norm2(x), key_value=memory))
        return x + layer.dropout3(layer.feed_forward(layer.norm3(x)))

    results = []
    for forward in (lambda x, memory: layer(x, memory), unfused):
        layer.zero_grad()
        inputs = attnkit.tensor(x, requires_grad=True)
        memory_input = attnkit.tensor(memory, requires_grad=True)
        out = forward(inputs, memory_input)
        out.backward(attnkit.tensor(grad_out))
        results.append(
            [out.detach().numpy(), inputs.grad.numpy(), memory_input.grad.numpy()]
            + [p.grad.numpy() for _, p in layer.named_parameters()]
        )
    for fused, plain in zip(*results):
        np.testing.assert_array_equal(fused, plain)
