"""nn layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout.

Each layer's forward and backward are compared with a float64 numpy
re-implementation of the layer (tests/reference/layers.py), whose own
gradients are checked by central finite differences at tiny sizes. Also:
PyTorch's default initialization, reproducible from attnkit.manual_seed,
and bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from conftest import assert_elementwise_close, assert_reduction_close

import attnkit
from attnkit import nn


def check_by_finite_differences(layer, x, grad_output, differentiate_x=True):
    """The layer's analytic gradients of L = sum(forward(x) * grad_output)
    against central differences in float64, for every element of x and of
    every parameter."""
    grad_x, grads = layer.backward(x, grad_output)
    analytic = {"x": grad_x} if differentiate_x else {}
    analytic.update((name, grads[name]) for name in layer.parameters)
    arrays = {name: x if name == "x" else layer.parameters[name] for name in analytic}
    numeric = reference.central_differences(arrays, lambda: float(np.sum(layer.forward(x) * grad_output)))
    # The same absolute bound as the other finite-difference checks: h^2
    # truncation and float64 rounding stay far below it at these sizes.
    for name, gradient in analytic.items():
        assert np.max(np.abs(numeric[name] - gradient), initial=0.0) < 1e-6, name


def set_values(parameter, values):
    parameter.detach().numpy()[...] = values


def run(module, x, grad_output, input_requires_grad=True):
    """Forward and backward through ``module``: (output, input gradient,
    {parameter name: gradient})."""
    tx = attnkit.tensor(x, requires_grad=input_requires_grad) if input_requires_grad else attnkit.tensor(x)
    y = module(tx)
    y.backward(attnkit.tensor(grad_output))
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return y.detach().numpy(), (tx.grad.numpy() if input_requires_grad else None), grads


# ---------------------------------------------------------------- Linear ---


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh"])
def test_linear_reference_by_finite_differences(rng, activation):
    layer = reference.LinearLayer(rng.standard_normal((3, 4)), rng.standard_normal(3), activation)
    check_by_finite_differences(layer, rng.standard_normal((2, 4)), rng.standard_normal((2, 3)))


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_reference(cpu_isa, rng, activation, bias):
    attnkit.manual_seed(1234)  # the same weights whatever ran before
    layer = nn.Linear(13, 11, bias=bias, activation=activation)
    x = rng.standard_normal((2, 7, 13)).astype(np.float32)
    grad_output = rng.standard_normal((2, 7, 11)).astype(np.float32)
    y, grad_x, grads = run(layer, x, grad_output)

    w = layer.weight.detach().numpy()
    b = layer.bias.detach().numpy() if bias else np.zeros(11, np.float32)
    ref = reference.LinearLayer(w, b if bias else None, activation)
    pre = ref.pre_activation(x)
    naive_pre = (reference.matmul_naive_float32(x, w.T) + b).astype(np.float64)
    activate = lambda values: reference._activation_and_slope(values, activation)[0]  # noqa: E731
    assert_reduction_close(y, activate(pre), activate(naive_pre).astype(np.float32))

    expected_x, expected = ref.backward(x, grad_output)
    # naive: the same gradients summed plainly in float32 from the exact slope
    grad_pre = (grad_output * reference._activation_and_slope(pre, activation)[1]).astype(np.float32)
    rows = grad_pre.reshape(-1, 11)
    assert_reduction_close(grad_x, expected_x, reference.matmul_naive_float32(grad_pre, w))
    assert_reduction_close(
        grads["weight"], expected["weight"], reference.matmul_naive_float32(rows.T, x.reshape(-1, 13))
    )
    if bias:
        assert_reduction_close(grads["bias"], expected["bias"], np.add.reduce(rows, axis=0, dtype=np.float32))
    else:
        assert "bias" not in grads and layer.bias is None


@pytest.mark.parametrize("in_features,out_features,shape", [(1, 1, (1,)), (1, 3, (4, 1)), (17, 1, (3, 17))])
def test_linear_odd_sizes(rng, in_features, out_features, shape):
    layer = nn.Linear(in_features, out_features)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(attnkit.tensor(x))
    assert y.shape == shape[:-1] + (out_features,)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    expected = reference.LinearLayer(w, b).forward(x)
    naive = (reference.matmul_naive_float32(x.reshape(-1, in_features), w.T) + b).reshape(expected.shape)
    assert_reduction_close(y.detach().numpy(), expected, naive)


def test_linear_initialization_is_pytorchs_from_the_philox_stream():
    # U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, the weight from the
    # generator's stream (seed, 0), the bias from (seed, 1): element k is
    # a + (b - a) * r_k / 2^32, rounded once to float32.
    attnkit.manual_seed(1234)
    layer = nn.Linear(7, 5)
    bound = 1 / math.sqrt(7)
    for name, count, offset in (("weight", 35, 0), ("bias", 5, 1)):
        u = reference.philox_stream(count, 1234, offset).astype(np.float64) * 2.0**-32
        expected = (-bound + (bound - -bound) * u).astype(np.float32)
        actual = getattr(layer, name).detach().numpy().reshape(-1)
        np.testing.assert_array_equal(actual, expected)
    assert attnkit.random.default_generator.offset == 2


def test_initialization_is_reproducible_from_manual_seed():
    def build():
        return nn.Sequential(nn.Embedding(11, 4), nn.Linear(4, 3), nn.LayerNorm(3))

    attnkit.manual_seed(5)
    first = build().state_dict()
    attnkit.manual_seed(5)
    second = build().state_dict()
    attnkit.manual_seed(6)
    third = build().state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy())
    assert not np.array_equal(first["1.weight"].numpy(), third["1.weight"].numpy())
    assert not np.array_equal(first["0.weight"].numpy(), third["0.weight"].numpy())


def test_linear_repr_and_bad_arguments():
    assert repr(nn.Linear(3, 4)) == "Linear(in_features=3, out_features=4, bias=True)"
    assert (
        repr(nn.Linear(3, 4, bias=False, activation="gelu"))
        == "Linear(in_features=3, out_features=4, bias=False, activation='gelu')"
    )
    with pytest.raises(TypeError, match="Linear: argument 'in_features' expected an int"):
        nn.Linear(3.0, 4)
    with pytest.raises(ValueError, match=r"Linear: argument 'out_features' expected an integer in \[0, 2\*\*63\)"):
        nn.Linear(3, -1)
    with pytest.raises(ValueError, match="Linear: argument 'activation'"):
        nn.Linear(3, 4, activation="tanh")
    with pytest.raises(TypeError, match="Linear: argument 'bias' expected a bool"):
        nn.Linear(3, 4, bias=1)
    with pytest.raises(ValueError, match="last dimension of 3"):
        nn.Linear(3, 4)(attnkit.tensor(np.ones((2, 5), np.float32)))


# ------------------------------------------------------------- Embedding ---


def test_embedding_reference_by_finite_differences(rng):
    layer = reference.EmbeddingLayer(rng.standard_normal((5, 3)))
    ids = np.array([[0, 4, 4], [2, 0, 1]])
    check_by_finite_differences(layer, ids, rng.standard_normal((2, 3, 3)), differentiate_x=False)


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_embedding_matches_reference(cpu_isa, rng, id_dtype):
    layer = nn.Embedding(17, 5)
    ids = rng.integers(0, 17, (3, 127)).astype(id_dtype)
    ids[0, :4] = [0, 16, 16, 16]  # both ends of the table, and repeats
    grad_output = rng.standard_normal((3, 127, 5)).astype(np.float32)
    y, _, grads = run(layer, ids, grad_output, input_requires_grad=False)
    ref = reference.EmbeddingLayer(layer.weight.detach().numpy())
    np.testing.assert_array_equal(y, ref.forward(ids))  # a lookup copies exactly
    naive = np.zeros((17, 5), np.float32)
    np.add.at(naive, ids.reshape(-1), grad_output.reshape(-1, 5))
    assert_reduction_close(grads["weight"], ref.backward(ids, grad_output)[1]["weight"], naive)


def test_embedding_initialization_is_standard_normal():
    # N(0, 1) by Box-Muller from the stream (seed, 0): recomputed here with
    # Python's math (libm) log, sqrt, cos and sin.
    attnkit.manual_seed(99)
    layer = nn.Embedding(301, 7)  # an odd count: the last pair's sine is unused
    n = 301 * 7
    words = reference.philox_stream(n + 1, 99, 0).astype(np.float64)
    expected = np.empty(n)
    for k in range(n):
        j = k // 2
        radius = math.sqrt(-2.0 * math.log((words[2 * j] + 0.5) * 2.0**-32))
        angle = 2.0 * math.pi * 2.0**-32 * words[2 * j + 1]
        expected[k] = radius * (math.cos(angle) if k % 2 == 0 else math.sin(angle))
    values = layer.weight.detach().numpy().reshape(-1)
    assert_elementwise_close(values, expected)
    # and it is a standard normal sample: mean and variance within 5 standard errors
    assert abs(values.mean()) < 5 / math.sqrt(n)
    assert abs(values.var() - 1) < 5 * math.sqrt(2 / n)


def test_embedding_from_pretrained_and_bad_input(rng):
    table = attnkit.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    np.testing.assert_array_equal(frozen(attnkit.tensor([3, 0])).detach().numpy(), table.numpy()[[3, 0]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    assert repr(nn.Embedding(10, 4)) == "Embedding(10, 4)"
    with pytest.raises(ValueError, match="id"):
        frozen(attnkit.tensor([4]))
    with pytest.raises(ValueError, match=r"Embedding: argument 'num_embeddings' expected an integer in \[1, 2\*\*63\)"):
        nn.Embedding(0, 3)
    with pytest.raises(ValueError, match="expected a 2-D tensor"):
        nn.Embedding.from_pretrained(attnkit.tensor(np.ones(3, np.float32)))


def test_embedding_padding_idx_starts_at_zero_and_is_never_trained(rng):
    attnkit.manual_seed(5)
    plain = nn.Embedding(9, 4)
    attnkit.manual_seed(5)
    padded = nn.Embedding(9, 4, padding_idx=-2)  # row 7
    assert padded.padding_idx == 7
    assert repr(padded) == "Embedding(9, 4, padding_idx=7)"
    expected = plain.weight.detach().numpy().copy()
    expected[7] = 0.0  # the same draws, with the padding row zeroed
    np.testing.assert_array_equal(padded.weight.detach().numpy(), expected)
    optimizer = attnkit.optim.AdamW(padded.parameters(), lr=0.1, weight_decay=0.1)
    ids = attnkit.tensor(np.array([[7, 1, 7], [3, 7, 0]]))
    for _ in range(3):
        (padded(ids) * attnkit.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))).sum().backward()
        np.testing.assert_array_equal(padded.weight.grad.numpy()[7], np.zeros(4, np.float32))
        assert np.abs(padded.weight.grad.numpy()[[0, 1, 3]]).min() > 0
        optimizer.step()
        optimizer.zero_grad()
    np.testing.assert_array_equal(padded.weight.detach().numpy()[7], np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"Embedding: argument 'padding_idx' expected an integer in \[-9, 9\)"):
        nn.Embedding(9, 4, padding_idx=9)


def test_embedding_from_pretrained_keeps_the_padding_row(rng):
    table = attnkit.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    layer = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=2)
    np.testing.assert_array_equal(layer.weight.detach().numpy(), table.numpy())  # not zeroed, as PyTorch
    layer(attnkit.tensor([2, 1, 2])).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad.numpy(), [[0, 0, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0]])


# --------------------------------------------------- LayerNorm, RMSNorm ---


@pytest.mark.parametrize("affine", ["none", "weight", "weight and bias"])
def test_layer_norm_reference_by_finite_differences(rng, affine):
    weight = rng.standard_normal(5) if affine != "none" else None
    bias = rng.standard_normal(5) if affine == "weight and bias" else None
    layer = reference.LayerNormLayer(weight, bias, eps=1e-5)
    check_by_finite_differences(layer, rng.standard_normal((3, 5)), rng.standard_normal((3, 5)))


@pytest.mark.parametrize("affine", [False, True])
def test_rms_norm_reference_by_finite_differences(rng, affine):
    layer = reference.RMSNormLayer(rng.standard_normal(5) if affine else None, eps=1e-6)
    check_by_finite_differences(layer, rng.standard_normal((3, 5)), rng.standard_normal((3, 5)))


def compare_norm(module, reference_class, options, x, grad_output):
    y, grad_x, grads = run(module, x, grad_output)
    parameters = {name: p.detach().numpy() for name, p in module.named_parameters()}
    exact = reference_class(**parameters, **options)
    plain = reference_class(**parameters, **options, dtype=np.float32)
    assert_reduction_close(y, exact.forward(x), plain.forward(x))
    expected_x, expected = exact.backward(x, grad_output)
    plain_x, plain_grads = plain.backward(x, grad_output)
    assert_reduction_close(grad_x, expected_x, plain_x)
    assert set(grads) == set(expected)
    for name in grads:
        assert_reduction_close(grads[name], expected[name], plain_grads[name])


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 5, 127)])
@pytest.mark.parametrize("options", [dict(), dict(bias=False), dict(elementwise_affine=False), dict(eps=0.5)])
def test_layer_norm_matches_reference(cpu_isa, rng, shape, options):
    module = nn.LayerNorm(shape[-1], **options)
    for p in module.parameters():  # away from the ones/zeros start, so a mix-up shows
        set_values(p, rng.standard_normal(p.shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    grad_output = rng.standard_normal(shape).astype(np.float32)
    compare_norm(module, reference.LayerNormLayer, dict(eps=module.eps), x, grad_output)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 5, 127)])
@pytest.mark.parametrize("options", [dict(), dict(elementwise_affine=False), dict(eps=0.5)])
def test_rms_norm_matches_reference(cpu_isa, rng, shape, options):
    module = nn.RMSNorm(shape[-1], **options)
    for p in module.parameters():
        set_values(p, rng.standard_normal(p.shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    grad_output = rng.standard_normal(shape).astype(np.float32)
    compare_norm(module, reference.RMSNormLayer, dict(eps=module.eps), x, grad_output)


def test_norm_initialization_parameters_and_repr():
    layer_norm = nn.LayerNorm(4)
    np.testing.assert_array_equal(layer_norm.weight.detach().numpy(), np.ones(4, np.float32))
    np.testing.assert_array_equal(layer_norm.bias.detach().numpy(), np.zeros(4, np.float32))
    assert [name for name, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]
    assert list(nn.LayerNorm(4, elementwise_affine=False).parameters()) == []
    assert repr(layer_norm) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    assert repr(nn.LayerNorm(4, bias=False)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=False)"
    rms = nn.RMSNorm([6], eps=1e-6)
    assert rms.normalized_shape == (6,)
    np.testing.assert_array_equal(rms.weight.detach().numpy(), np.ones(6, np.float32))
    assert repr(rms) == "RMSNorm((6,), eps=1e-06, elementwise_affine=True)"
    assert nn.RMSNorm(6).eps is None  # F.rms_norm then takes float32's machine epsilon
    with pytest.raises(ValueError, match="LayerNorm: argument 'normalized_shape' expected sizes in"):
        nn.LayerNorm(-1)
    with pytest.raises(TypeError, match="RMSNorm: argument 'normalized_shape' expected an int or a tuple"):
        nn.RMSNorm("6")
    # What the op refuses is refused once, there, at the first call.
    with pytest.raises(ValueError, match="layer_norm: argument 'x' expected an array whose last dimension is at least"):
        nn.LayerNorm(0)(attnkit.ones(2, 0))
    with pytest.raises(ValueError, match="rms_norm: argument 'normalized_shape' expected \\[3\\]"):
        nn.RMSNorm(())(attnkit.ones(2, 3))
    # eps is checked once, by the op (its rule: a finite number >= 0).
    with pytest.raises(ValueError, match="layer_norm: argument 'eps' expected a finite number >= 0"):
        nn.LayerNorm(4, eps=-1.0)(attnkit.ones(2, 4))
    with pytest.raises(TypeError, match="rms_norm: argument 'eps' expected a float"):
        nn.RMSNorm(4, eps="small")(attnkit.ones(2, 4))


# --------------------------------------------------------------- Dropout ---


def test_dropout_reference_by_finite_differences(rng):
    layer = reference.DropoutLayer(0.4, seed=3, offset=8)
    check_by_finite_differences(layer, rng.standard_normal((4, 5)), rng.standard_normal((4, 5)))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_matches_reference_in_training(cpu_isa, rng, p):
    module = nn.Dropout(p)
    x = rng.standard_normal((3, 127)).astype(np.float32)
    grad_output = rng.standard_normal((3, 127)).astype(np.float32)
    attnkit.manual_seed(21)
    y, grad_x, _ = run(module, x, grad_output)
    ref = reference.DropoutLayer(p, seed=21, offset=0)  # the first stream after the seed
    assert_elementwise_close(y, ref.forward(x))
    assert_elementwise_close(grad_x, ref.backward(x, grad_output)[0])
    assert 0 < np.count_nonzero(y == 0) < y.size


def test_dropout_eval_mode_and_edges(rng):
    x = attnkit.tensor(rng.standard_normal((4, 6)).astype(np.float32))
    module = nn.Dropout(0.5)
    module.eval()
    assert module(x) is x
    module.train()
    offset = attnkit.random.default_generator.offset
    assert not np.array_equal(module(x).numpy(), x.numpy())
    assert attnkit.random.default_generator.offset == offset + 1
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), np.zeros((4, 6), np.float32))
    assert repr(module) == "Dropout(p=0.5)"
    with pytest.raises(ValueError, match=r"Dropout: argument 'p' expected a probability in \[0, 1\]"):
        nn.Dropout(1.5)
    with pytest.raises(TypeError, match="Dropout: argument 'p' expected a float"):
        nn.Dropout("0.1")


# ------------------------------------------------------------------ init ---


def test_init_functions(rng):
    t = attnkit.tensor(np.zeros((64, 32), np.float32))
    nn.init.xavier_uniform_(t, gain=2.0)
    bound = 2.0 * math.sqrt(6 / (64 + 32))
    values = t.numpy()
    assert values.min() >= -bound and values.max() <= bound and values.std() > bound / 3
    nn.init.normal_(t, mean=3.0, std=0.5)
    assert abs(t.numpy().mean() - 3.0) < 5 * 0.5 / math.sqrt(t.numel())
    nn.init.constant_(t, 0.25)
    assert (t.numpy() == 0.25).all()
    # bfloat16 gets one rounding of the float64 values
    half = attnkit.tensor(np.zeros(5, np.float32)).to(attnkit.bfloat16)
    nn.init.ones_(half)
    np.testing.assert_array_equal(np.asarray(half), np.ones(5, np.float32))
    generator = attnkit.random.Generator(17)
    a = nn.init.uniform_(attnkit.tensor(np.zeros(9, np.float32)), -1, 1, generator=generator).numpy().copy()
    generator.manual_seed(17)
    b = nn.init.uniform_(attnkit.tensor(np.zeros(9, np.float32)), -1, 1, generator=generator).numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="normal_: argument 'tensor' expected a floating-point tensor"):
        nn.init.normal_(attnkit.tensor([1, 2]))
    with pytest.raises(ValueError, match="uniform_: expected a <= b"):
        nn.init.uniform_(t, 1.0, 0.0)
    with pytest.raises(ValueError, match="normal_: argument 'std' expected a non-negative number"):
        nn.init.normal_(t, std=-1.0)
    with pytest.raises(ValueError, match="fan_in_and_fan_out: a weight needs at least 2 dimensions"):
        nn.init.xavier_uniform_(attnkit.tensor(np.zeros(3, np.float32)))
