"""attnkit.save / attnkit.load: safetensors files that follow the format's
rules (checked here by parsing the bytes by hand), bit-identical round
trips for every dtype, nested checkpoints, memory-mapping, and clear errors
for malformed files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct

import numpy as np
import pytest

import attnkit
from attnkit import nn
from attnkit.serialization import load_config

DTYPE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int32": "I32", "int64": "I64", "bool": "BOOL"}


def sample_tensors(rng):
    """One tensor of every dtype, with values a conversion would disturb."""
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f32.view(np.uint32)[0, 0] = 0x7FC12345  # NaN with a payload
    f32[0, 1], f32[0, 2], f32[0, 3] = -0.0, np.float32(1e-45), np.inf
    f16 = rng.standard_normal(7).astype(np.float16)
    f16[0] = np.float16(-0.0)
    bf16_bits = rng.integers(0, 2**16, 9).astype(np.uint16)
    bf16_bits[0] = 0x7FC1  # NaN
    bf16 = attnkit.Tensor._wrap(attnkit._C.array_from_numpy(bf16_bits.view(np.float16), "bfloat16", True))
    return {
        "weights.f32": attnkit.tensor(f32),
        "f16": attnkit.tensor(f16),
        "bf16": bf16,
        "i32": attnkit.tensor(rng.integers(-(2**31), 2**31, (2, 2, 3)).astype(np.int32)),
        "i64": attnkit.tensor(np.array([-(2**63), 2**63 - 1, 0, 5], np.int64)),
        "mask": attnkit.tensor(rng.integers(0, 2, 11).astype(bool)),
        "scalar": attnkit.tensor(np.float32(2.5)),
        "empty": attnkit.tensor(np.zeros((0, 4), np.float32)),
    }


def raw(tensor):
    """The tensor's bytes (bfloat16 through its bit pattern)."""
    array = tensor._array
    if array.dtype == "bfloat16":
        array = array.view_as_dtype("float16")
    return np.asarray(array).tobytes()


def parse_by_hand(path):
    """(header dict, byte buffer, header length) read by the format's rules."""
    data = open(path, "rb").read()
    (header_length,) = struct.unpack("<Q", data[:8])
    header_bytes = data[8 : 8 + header_length]
    return json.loads(header_bytes.decode("utf-8")), data[8 + header_length :], header_length, header_bytes


def test_file_follows_the_safetensors_format(tmp_path, rng):
    tensors = sample_tensors(rng)
    path = tmp_path / "tensors.safetensors"
    attnkit.save(tensors, path, config={"n_layer": 2, "dropout": 0.1, "name": "tiny"})
    header, buffer, header_length, header_bytes = parse_by_hand(path)

    assert header_bytes.startswith(b"{") and header_bytes.rstrip(b" ").endswith(b"}")
    assert (8 + header_length) % 8 == 0  # the data starts 8-byte aligned
    metadata = header.pop("__metadata__")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    assert json.loads(metadata["config"]) == {"n_layer": 2, "dropout": 0.1, "name": "tiny"}
    assert "attnkit.structure" not in metadata  # a flat dict is plain entries
    assert list(header) == list(tensors)  # every tensor, under its own name, in order
    spans = []
    for name, tensor in tensors.items():
        entry = header[name]
        assert set(entry) == {"dtype", "shape", "data_offsets"}
        assert entry["dtype"] == DTYPE_CODES[tensor.dtype.name]
        assert entry["shape"] == list(tensor.shape)
        begin, end = entry["data_offsets"]
        assert end - begin == tensor.numel() * tensor.dtype.itemsize
        assert begin % tensor.dtype.itemsize == 0  # aligned to the element size
        assert buffer[begin:end] == raw(tensor)  # row-major little-endian bytes (this host is little-endian)
        spans.append((begin, end))
    # the tensors cover the buffer exactly: no holes, no overlaps
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(buffer)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip_is_bit_identical(tmp_path, rng, mmap):
    tensors = sample_tensors(rng)
    path = tmp_path / "tensors.safetensors"
    attnkit.save(tensors, path)
    loaded = attnkit.load(path, mmap=mmap)
    assert list(loaded) == list(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        assert raw(loaded[name]) == raw(tensor), name
    assert load_config(path) is None


def test_a_file_written_by_hand_loads(tmp_path):
    # Another writer's choices: no padding, the header's order unlike the
    # data's, extra metadata, a 0-d tensor.
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([1, -2], dtype="<i8")
    c = np.array(7, dtype="<i4")
    header = {
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]},
        "__metadata__": {"source": "hand"},
        "c": {"dtype": "I32", "shape": [], "data_offsets": [40, 44]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
    }
    header_bytes = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + b.tobytes() + a.tobytes() + c.tobytes())
    loaded = attnkit.load(path)
    assert list(loaded) == ["a", "c", "b"]
    np.testing.assert_array_equal(loaded["a"].numpy(), a)
    np.testing.assert_array_equal(loaded["b"].numpy(), b)
    assert loaded["c"].shape == () and loaded["c"].item() == 7


def test_nested_checkpoints_keep_their_structure(tmp_path, rng):
    @dataclasses.dataclass
    class Config:
        vocab_size: int = 11
        n_embd: int = 8
        bias: bool = False

    weight = attnkit.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    moment = attnkit.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    checkpoint = {
        "model": {"w": weight},
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": moment}},
            "param_groups": [{"betas": (0.9, 0.95), "params": [0]}],
        },
        "same weight again": weight,
        "step": 1200,
        "loss": 1.25,
        "best": float("inf"),
        "worst": float("-inf"),
        "bad": float("nan"),
        "tiny": 5e-324,
        "name": "run-7",
        "flags": [True, None, "x", 2**70],
        "@odd": {"@tensor": "not a tensor"},
        "nested tuple": ((1, 2), [3]),
    }
    path = tmp_path / "checkpoint.safetensors"
    attnkit.save(checkpoint, path, config=Config())
    loaded = attnkit.load(path)
    header, _, _, _ = parse_by_hand(path)
    # tensors named by their path; one met twice is written once
    assert set(header) - {"__metadata__"} == {"model.w", "optimizer.state.0.exp_avg"}

    assert set(loaded) == set(checkpoint)
    assert raw(loaded["model"]["w"]) == raw(weight)
    assert raw(loaded["optimizer"]["state"][0]["exp_avg"]) == raw(moment)
    assert loaded["same weight again"] is loaded["model"]["w"]
    assert loaded["optimizer"]["state"][0]["step"] == 3  # int keys and values stay ints
    assert loaded["optimizer"]["param_groups"] == [{"betas": (0.9, 0.95), "params": [0]}]
    assert loaded["step"] == 1200 and loaded["loss"] == 1.25 and loaded["tiny"] == 5e-324
    assert loaded["best"] == math.inf and loaded["worst"] == -math.inf and math.isnan(loaded["bad"])
    assert loaded["flags"] == [True, None, "x", 2**70] and loaded["name"] == "run-7"
    assert loaded["@odd"] == {"@tensor": "not a tensor"}  # user keys that look like tags survive
    assert loaded["nested tuple"] == ((1, 2), [3])
    assert load_config(path) == {"vocab_size": 11, "n_embd": 8, "bias": False}


def test_model_outputs_are_bit_identical_after_save_and_load(tmp_path, rng):
    attnkit.manual_seed(3)
    model = nn.Sequential(nn.Embedding(13, 8), nn.Linear(8, 16, activation="gelu"), nn.Linear(16, 13))
    path = tmp_path / "model.safetensors"
    attnkit.save(model.state_dict(), path, config={"vocab_size": 13})
    attnkit.manual_seed(4)
    fresh = nn.Sequential(nn.Embedding(13, 8), nn.Linear(8, 16, activation="gelu"), nn.Linear(16, 13))
    fresh.load_state_dict(attnkit.load(path))
    ids = attnkit.tensor(rng.integers(0, 13, (2, 9)))
    assert raw(model(ids).detach()) == raw(fresh(ids).detach())


def test_a_tied_weight_is_written_once(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.proj = nn.Linear(8, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.embed.weight

    model = Tied()
    state = model.state_dict()
    path = tmp_path / "tied.safetensors"
    attnkit.save(state, path)
    header, buffer, _, _ = parse_by_hand(path)
    assert "embed.weight" in header and "head.weight" not in header
    assert len(buffer) == (50 * 8 + 8 * 8 + 8) * 4  # the table once
    loaded = attnkit.load(path)
    assert list(loaded) == list(state)  # every name back, in order
    assert loaded["head.weight"] is loaded["embed.weight"]
    fresh = Tied()
    fresh.load_state_dict(loaded)
    assert raw(fresh.head.weight.detach()) == raw(model.embed.weight.detach())
    assert fresh.head.weight is fresh.embed.weight


def test_memory_mapped_tensors_are_copy_on_write(tmp_path, rng):
    path = tmp_path / "weights.safetensors"
    values = rng.standard_normal((4, 4)).astype(np.float32)
    attnkit.save({"w": attnkit.tensor(values)}, path)
    original = path.read_bytes()
    loaded = attnkit.load(path)["w"]
    loaded.numpy()[...] = 0.0  # writable, privately
    assert path.read_bytes() == original
    # saving over the mapped file replaces it; the mapped tensor stays valid
    attnkit.save({"w": attnkit.tensor(values + 1)}, path)
    assert (loaded.numpy() == 0.0).all()
    np.testing.assert_array_equal(attnkit.load(path)["w"].numpy(), values + 1)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_saving_what_a_checkpoint_cannot_hold(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="save module.state_dict\\(\\) instead"):
        attnkit.save(nn.Linear(2, 2), path)
    with pytest.raises(TypeError, match="cannot store a ndarray at 'a.0'"):
        attnkit.save({"a": [np.ones(2)]}, path)
    with pytest.raises(TypeError, match="has a key of type float"):
        attnkit.save({1.5: 2}, path)
    with pytest.raises(TypeError, match="argument 'config' must be JSON-serializable"):
        attnkit.save({}, path, config={"nan": float("nan")})
    with pytest.raises(TypeError, match="argument 'config' expected a dict or a dataclass"):
        attnkit.save({}, path, config=[1])
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        attnkit.save({"__metadata__": attnkit.tensor([1.0])}, path)
    assert not path.exists()


def write_raw(path, header, payload=b""):
    header_bytes = json.dumps(header).encode() if isinstance(header, dict) else header
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + payload)


@pytest.mark.parametrize(
    "header,payload,message",
    [
        ({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8), "has dtype 'F64'; attnkit reads"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "needs 12 bytes, its offsets span 8"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, bytes(8), "outside the 8-byte buffer"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "a hole at byte 0"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            bytes(8),
            "an overlap at byte 8",
        ),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "cover 4 bytes of a 8-byte buffer"),
        (
            {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
            bytes(4),
            r"not a list of sizes in \[0, 2\*\*63\)",
        ),
        ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "needs 'dtype', 'shape' and 'data_offsets'"),
        ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02", "bytes other than 0 and 1"),
        ({"__metadata__": {"n": 1}}, b"", "'__metadata__' must map strings to strings"),
        (b'{"a": 1, "a": 2}', b"", "duplicate key 'a'"),
        (b"[1, 2]", b"", "the header is not a JSON object"),
        (b"{\xff}", b"", "not UTF-8 JSON"),
        ({"__metadata__": {"attnkit.structure": '{"@tensor": "gone"}'}}, b"", "refers to a tensor 'gone'"),
        # what a fuzzer found or could: every way a header can lie is refused whole
        (b"[" * 100_000 + b"]" * 100_000, b"", "the header nests too deeply"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"", "the header nests too deeply"),
        ({"__metadata__": {"attnkit.structure": "[" * 100_000 + "]" * 100_000}}, b"", "it nests too deeply"),
        ({"__metadata__": {"attnkit.structure": '{"@tuple": 5}'}}, b"", "malformed 'attnkit.structure' entry"),
        ({"__metadata__": {"attnkit.structure": '{"@dict": [[[1], 2]]}'}}, b"", "malformed 'attnkit.structure'"),
        ({"__metadata__": {"attnkit.structure": '{"@tensor": ["a"]}'}}, b"", "malformed 'attnkit.structure'"),
        ({"__metadata__": {"attnkit.structure": "{not json"}}, b"", "malformed 'attnkit.structure' entry"),
        ({"__metadata__": []}, b"", "'__metadata__' must map strings to strings"),
        ({"__metadata__": ""}, b"", "'__metadata__' must map strings to strings"),
        ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4), r"has dtype \['F32'\]"),
        ({"a": {"dtype": "F32", "shape": [2**64], "data_offsets": [0, 0]}}, b"", "not a list of sizes"),
        ({"a": {"dtype": "F32", "shape": [2**63, 0], "data_offsets": [0, 0]}}, b"", "not a list of sizes"),
        ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4), "not a list of sizes"),
        ({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, bytes(4), "not a list of sizes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, bytes(4), "outside the 4-byte buffer"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "outside the 4-byte buffer"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}}, bytes(4), "outside the 4-byte buffer"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 2**70]}}, bytes(4), "outside the 4-byte buffer"),
        ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, bytes(4), "needs 4835703278458"),
        ({"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "needs 8 bytes, its offsets span 4"),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            },
            bytes(8),
            "an overlap at byte 4",
        ),
        ({"a": []}, b"", "needs 'dtype', 'shape' and 'data_offsets'"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, header, payload, message):
    path = tmp_path / "bad.safetensors"
    write_raw(path, header, payload)
    with pytest.raises(ValueError, match=message):
        attnkit.load(path)


def test_malformed_configs_raise_clear_errors(tmp_path):
    path = tmp_path / "bad.safetensors"
    for config, message in (
        ("[" * 100_000 + "]" * 100_000, "malformed 'config' entry \\(it nests too deeply\\)"),
        ("{oops", "malformed 'config' entry"),
        ("[1, 2]", "malformed 'config' entry \\(not a JSON object\\)"),
    ):
        write_raw(path, {"__metadata__": {"config": config}})
        with pytest.raises(ValueError, match=message):
            load_config(path)
        assert attnkit.load(path) == {}  # the tensors (none) do not depend on the config


def test_objects_too_deep_to_save(tmp_path):
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="save: the object nests too deeply"):
        attnkit.save({"x": deep}, tmp_path / "deep.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_truncated_files(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="fewer than the 8 of the header length"):
        attnkit.load(path)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(ValueError, match="a header length of 1000 bytes, in a file of 10"):
        attnkit.load(path)


def test_readable_by_the_safetensors_package(tmp_path, rng):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {k: v for k, v in sample_tensors(rng).items() if k != "bf16"}  # numpy has no bfloat16
    path = tmp_path / "ours.safetensors"
    attnkit.save(tensors, path)
    theirs = safetensors_numpy.load_file(str(path))
    for name, tensor in tensors.items():
        assert theirs[name].tobytes() == raw(tensor)
    other = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file({"x": np.arange(5, dtype=np.float32)}, str(other))
    np.testing.assert_array_equal(attnkit.load(other)["x"].numpy(), np.arange(5, dtype=np.float32))
