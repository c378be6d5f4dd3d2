"""nn.Module, Parameter and the containers: registration by assignment,
walks (deduplicated), strict state_dict round trips, modes, to(), repr."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
import attnkit.nn.functional as F
from attnkit import nn


class Block(nn.Module):
    """A tiny model with a parameter, a submodule, both kinds of buffer and a
    weight tied to another module's."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.scale = nn.Parameter(attnkit.tensor(np.full(4, 2.0, np.float32)))
        self.register_buffer("count", attnkit.tensor(np.array([3], np.int64)))
        self.register_buffer("table", attnkit.tensor(np.ones((2, 4), np.float32)), persistent=False)
        self.drop = nn.Dropout(0.5)

    def forward(self, ids):
        return self.head(self.drop(self.proj(self.embed(ids))))


def test_parameter_is_a_leaf_tensor_sharing_memory():
    data = attnkit.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    p = nn.Parameter(data)
    assert isinstance(p, attnkit.Tensor) and p.requires_grad and p.is_leaf
    p.detach().numpy()[0, 0] = 42.0
    assert data.numpy()[0, 0] == 42.0  # shares memory, as in PyTorch
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert nn.Parameter().shape == (0,)
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        nn.Parameter(attnkit.tensor([1, 2]))
    with pytest.raises(TypeError, match="Parameter: argument 'data' expected an attnkit.Tensor"):
        nn.Parameter(np.ones(3))


def test_registration_by_assignment():
    block = Block()
    assert list(block._parameters) == ["scale"]
    assert list(block._modules) == ["embed", "proj", "head", "drop"]
    assert list(block._buffers) == ["count", "table"]
    assert block.scale is block._parameters["scale"]
    # a parameter slot takes only a Parameter or None
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'scale'"):
        block.scale = attnkit.tensor(np.ones(4, np.float32))
    block.scale = None
    assert "scale" in block._parameters and block.scale is None
    assert [name for name, _ in block.named_parameters()] == ["embed.weight", "proj.weight", "proj.bias"]
    # a buffer slot takes a tensor
    block.count = attnkit.tensor(np.array([5], np.int64))
    assert block.count.numpy()[0] == 5 and "count" in block._buffers
    with pytest.raises(TypeError, match="to buffer 'count'"):
        block.count = 5
    # reassigning a name moves it between tables
    block.proj = nn.Parameter(attnkit.tensor(np.ones(2, np.float32)))
    assert "proj" not in block._modules and "proj" in block._parameters
    del block.proj
    assert not hasattr(block, "proj")
    # plain attributes stay plain
    block.note = "hello"
    assert block.note == "hello" and "note" not in block._parameters


def test_assigning_before_init_fails_clearly():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(attnkit.tensor(np.ones(2, np.float32)))
            super().__init__()

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\)"):
        Broken()


def test_register_errors():
    module = nn.Module()
    with pytest.raises(ValueError, match="without '.'"):
        module.register_buffer("a.b", attnkit.tensor([1.0]))
    with pytest.raises(TypeError, match="register_buffer: 'x' expected an attnkit.Tensor"):
        module.register_buffer("x", [1.0])
    with pytest.raises(TypeError, match="expected an attnkit.nn.Parameter or None"):
        module.register_parameter("w", attnkit.tensor([1.0]))
    with pytest.raises(KeyError, match="class attribute"):
        module.register_parameter("train", None)
    with pytest.raises(TypeError, match="add_module: 'm' expected an attnkit.nn.Module"):
        module.add_module("m", 3)
    with pytest.raises(NotImplementedError, match="Module has no forward"):
        module()


def test_walks_are_deduplicated_and_ordered():
    block = Block()
    names = [name for name, _ in block.named_parameters()]
    assert names == ["scale", "embed.weight", "proj.weight", "proj.bias"]  # head.weight is embed.weight
    assert len(list(block.parameters())) == 4
    assert len(list(block.named_parameters(remove_duplicate=False))) == 5
    assert [name for name, _ in block.named_parameters(recurse=False)] == ["scale"]
    assert [name for name, _ in block.named_buffers()] == ["count", "table"]
    assert [name for name, _ in block.named_modules()] == ["", "embed", "proj", "head", "drop"]
    assert [type(m).__name__ for m in block.children()] == ["Embedding", "Linear", "Linear", "Dropout"]
    shared = nn.Linear(2, 2)
    pair = nn.Sequential(shared, shared)
    assert len(list(pair.modules())) == 2 and len(list(pair.parameters())) == 2
    assert len(list(pair.children())) == 1
    assert block.get_submodule("proj") is block.proj
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        block.get_submodule("proj.nope")


def test_state_dict_keys_sharing_and_keep_vars():
    block = Block()
    state = block.state_dict()
    # PyTorch's order: own parameters, own persistent buffers, then children;
    # tied weights under both names; non-persistent buffers left out.
    assert list(state) == ["scale", "count", "embed.weight", "proj.weight", "proj.bias", "head.weight"]
    assert all(not t.requires_grad for t in state.values())
    state["proj.bias"].numpy()[0] = 123.0  # the entries share memory with the module
    assert block.proj.bias.detach().numpy()[0] == 123.0
    kept = block.state_dict(keep_vars=True)
    assert kept["proj.weight"] is block.proj.weight
    assert list(block.state_dict(prefix="model.")) == ["model." + key for key in state]


def raw(tensor):
    """The tensor's bytes."""
    return np.asarray(tensor.detach()).view(np.uint8).copy()


def test_state_dict_round_trip_is_bit_identical(rng):
    attnkit.manual_seed(1)
    source = Block()
    # values a float copy would disturb: NaN with a payload, -0.0, a subnormal
    weight = source.proj.weight.detach().numpy()
    weight.view(np.uint32)[0, 0] = 0x7FC12345
    weight[0, 1] = -0.0
    weight[0, 2] = np.float32(1e-45)
    attnkit.manual_seed(2)
    target = Block()
    result = target.load_state_dict({k: attnkit.tensor(v) for k, v in source.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in source.state_dict().items():
        assert np.array_equal(raw(value), raw(target.state_dict()[key])), key
    # loading copies into the existing parameters: identity (and ties) survive
    assert target.head.weight is target.embed.weight
    ids = attnkit.tensor(rng.integers(0, 7, (2, 5)))
    source.eval(), target.eval()
    assert np.array_equal(raw(source(ids)), raw(target(ids)))


def test_load_state_dict_strict_errors_list_every_problem():
    block = Block()
    state = block.state_dict()
    before = block.proj.weight.detach().numpy().copy()
    broken = {k: attnkit.tensor(v) for k, v in state.items() if k not in ("proj.bias", "count")}
    broken["proj.weight"] = attnkit.tensor(np.zeros((4, 4), np.float32))
    broken["extra.weight"] = attnkit.tensor(np.zeros(2, np.float32))
    broken["embed.weight"] = attnkit.tensor(np.zeros((8, 4), np.float32))
    with pytest.raises(ValueError) as error:
        block.load_state_dict(broken)
    message = str(error.value)
    assert "missing keys: count, proj.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "embed.weight: the checkpoint has shape (8, 4), the module (7, 4)" in message
    # nothing was copied: all problems are found before any write
    np.testing.assert_array_equal(block.proj.weight.detach().numpy(), before)


def test_load_state_dict_non_strict_returns_the_mismatches():
    block = Block()
    partial = {
        "proj.weight": attnkit.tensor(np.full((4, 4), 0.5, np.float32)),
        "unknown": attnkit.tensor(np.zeros(1, np.float32)),
    }
    result = block.load_state_dict(partial, strict=False)
    assert isinstance(result, nn.IncompatibleKeys)
    assert result.unexpected_keys == ["unknown"]
    assert result.missing_keys == ["scale", "count", "embed.weight", "proj.bias", "head.weight"]
    assert (block.proj.weight.detach().numpy() == 0.5).all()
    with pytest.raises(ValueError, match="shape mismatches"):
        block.load_state_dict({"proj.weight": attnkit.tensor(np.zeros((3, 4), np.float32))}, strict=False)
    with pytest.raises(TypeError, match="entry 'proj.weight' expected an attnkit.Tensor"):
        block.load_state_dict({"proj.weight": np.zeros((4, 4), np.float32)}, strict=False)


def test_load_state_dict_converts_other_dtypes():
    layer = nn.Linear(2, 3)
    values = np.array([[0.5, -1.25], [3.0, 0.1], [7.0, 2.0]])
    layer.load_state_dict(
        {
            "weight": attnkit.tensor(values, dtype=attnkit.float16),
            "bias": attnkit.tensor(np.zeros(3), dtype=attnkit.bfloat16),
        }
    )
    np.testing.assert_array_equal(layer.weight.detach().numpy(), values.astype(np.float16).astype(np.float32))


def test_train_eval_apply_zero_grad():
    block = Block()
    assert block.training and block.drop.training
    assert block.eval() is block
    assert not block.training and not block.drop.training and not block.proj.training
    block.train()
    assert block.drop.training
    visited = []
    block.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Embedding", "Linear", "Linear", "Dropout", "Block"]
    for p in block.parameters():
        p.grad = attnkit.tensor(np.ones(p.shape, np.float32))
    block.zero_grad(set_to_none=False)
    assert all((p.grad.numpy() == 0).all() for p in block.parameters())
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())
    block.requires_grad_(False)
    assert not any(p.requires_grad for p in block.parameters())
    with pytest.raises(TypeError, match="train: argument 'mode' expected a bool"):
        block.train("yes")


def test_to_device_and_dtype():
    block = Block()
    assert block.to("cpu") is block and block.cpu() is block
    assert block.to(attnkit.device("cpu")) is block
    with pytest.raises(RuntimeError, match="without the CUDA backend"):
        block.to("cuda")
    with pytest.raises(RuntimeError, match="without the CUDA backend"):
        block.cuda()
    weight = block.proj.weight
    before = weight.detach().numpy().copy()
    block.proj.weight.grad = attnkit.tensor(np.ones((4, 4), np.float32))
    block.to(attnkit.float16)
    assert block.proj.weight is weight and weight.dtype == attnkit.float16 and weight.requires_grad
    assert weight.grad is None
    np.testing.assert_array_equal(weight.detach().numpy(), before.astype(np.float16))
    assert block.count.dtype == attnkit.int64  # integer buffers keep their dtype
    assert block.table.dtype == attnkit.float16
    assert block.head.weight is block.embed.weight  # ties survive
    block.to("cpu", "float32")
    assert weight.dtype == attnkit.float32
    with pytest.raises(TypeError, match="floating-point dtype"):
        block.to(attnkit.int32)


def test_repr_is_a_readable_tree():
    model = nn.Sequential(
        nn.Linear(3, 4, activation="relu"),
        nn.Dropout(0.1),
        nn.ModuleList([nn.Linear(4, 4) for _ in range(3)] + [nn.Linear(4, 2)]),
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True, activation='relu')\n"
        "  (1): Dropout(p=0.1)\n"
        "  (2): ModuleList(\n"
        "    (0-2): 3 x Linear(in_features=4, out_features=4, bias=True)\n"
        "    (3): Linear(in_features=4, out_features=2, bias=True)\n"
        "  )\n"
        ")"
    )
    assert repr(nn.Module()) == "Module()"


def test_containers():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    third = layers[2]
    layers.append(nn.Linear(2, 5))
    assert len(layers) == 4 and layers[-1].out_features == 5
    del layers[0]
    assert layers[1] is third and list(layers._modules) == ["0", "1", "2"]
    layers.insert(0, nn.Dropout(0.2))
    assert isinstance(layers[0], nn.Dropout) and layers[2] is third
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert list(layers.state_dict()) == ["1.weight", "1.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    with pytest.raises(IndexError, match="index 9 is out of range for 4 modules"):
        layers[9]
    with pytest.raises(TypeError, match="expected an attnkit.nn.Module"):
        layers.append("linear")
    table = nn.ModuleDict({"encoder": nn.Linear(2, 3), "decoder": nn.Linear(3, 2)})
    assert list(table) == ["encoder", "decoder"] and "encoder" in table
    assert list(table.state_dict())[0] == "encoder.weight"
    with pytest.raises(KeyError, match="no module 'middle'"):
        table["middle"]


def test_module_call_and_gradients_match_the_functional_ops(rng):
    # A Sequential of layers is the composition of their functional ops: the
    # same kernels on the same inputs, so the same bits, forward and backward.
    model = nn.Sequential(nn.Linear(5, 8, activation="gelu_tanh"), nn.Linear(8, 3))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    out = model(attnkit.tensor(x))
    out.backward(attnkit.tensor(g))
    params = [attnkit.tensor(p.detach().numpy(), requires_grad=True) for p in model.parameters()]
    hidden = F.linear(attnkit.tensor(x), params[0], params[1], activation="gelu_tanh")
    expected = F.linear(hidden, params[2], params[3])
    expected.backward(attnkit.tensor(g))
    np.testing.assert_array_equal(out.detach().numpy(), expected.detach().numpy())
    for p, q in zip(model.parameters(), params):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    # gradients accumulate until zero_grad
    model(attnkit.tensor(x)).backward(attnkit.tensor(g))
    np.testing.assert_array_equal(model[1].bias.grad.numpy(), 2 * params[3].grad.numpy())
