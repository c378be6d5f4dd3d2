"""The Hugging Face checkpoint loader itself, without transformers: what it
refuses and how it says so, shards, dtypes, memory mapping, and save/load
round trips on checkpoints that attnkit writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import attnkit
from attnkit._tensor_data import values_view
from attnkit.models import GPT, GPTConfig, from_pretrained, hf


def _gpt(seed: int = 0, **overrides) -> GPT:
    attnkit.manual_seed(seed)
    settings = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8, dropout=0.0)
    settings.update(overrides)
    return GPT(GPTConfig(**settings))


@pytest.fixture
def saved(tmp_path):
    model = _gpt()
    model.save_pretrained(tmp_path)
    return model, tmp_path


def _rewrite_weights(directory, change):
    path = os.path.join(directory, "model.safetensors")
    tensors = dict(attnkit.load(path, mmap=False))
    change(tensors)
    attnkit.save(tensors, path)


def _same_weights(a, b) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def test_round_trip_is_bit_for_bit(saved):
    model, directory = saved
    loaded = from_pretrained(directory)
    assert loaded.config == model.config
    _same_weights(loaded, model)
    names = set(attnkit.load(directory / "model.safetensors"))
    assert "transformer.h.1.attn.c_attn.weight" in names and "lm_head.weight" not in names
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["n_embd"] == 8 and config["dtype"] == "float32"


def test_loaded_weights_are_copy_on_write(saved):
    _, directory = saved
    loaded = from_pretrained(directory)
    original = loaded.wte.weight.detach().numpy().copy()
    values_view(loaded.wte.weight)[...] = 0.0  # the embedding is used in place from the mapped file
    np.testing.assert_array_equal(from_pretrained(directory).wte.weight.detach().numpy(), original)


def test_model_type_alone_picks_the_default_class(saved):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    del config["architectures"]
    (directory / "config.json").write_text(json.dumps(config))
    assert isinstance(from_pretrained(directory), GPT)


def test_half_precision_weights_widen_exactly(saved):
    model, directory = saved

    def to_half(tensors):
        for name in list(tensors):
            tensors[name] = tensors[name].to(attnkit.bfloat16 if "h.0" in name else attnkit.float16)

    _rewrite_weights(directory, to_half)
    loaded = from_pretrained(directory)
    stored = attnkit.load(directory / "model.safetensors")
    expected = stored["transformer.h.0.attn.c_attn.weight"].to(attnkit.float32).numpy().T
    np.testing.assert_array_equal(loaded.blocks[0].self_attn.qkv_proj.weight.detach().numpy(), expected)
    np.testing.assert_array_equal(
        loaded.wpe.weight.detach().numpy(), stored["transformer.wpe.weight"].to(attnkit.float32).numpy()
    )
    assert loaded.wpe.weight.dtype == attnkit.float32


def test_hub_names_and_missing_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"'openai-community/gpt2' is not a local directory.*never downloads"):
        from_pretrained("openai-community/gpt2")
    with pytest.raises(ValueError, match="is not a local directory"):
        from_pretrained(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        from_pretrained(tmp_path / "file")
    with pytest.raises(ValueError, match="config.json.*does not exist"):
        from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="argument 'path'"):
        from_pretrained(3)


def test_unknown_architecture_names_the_supported_ones(saved):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    config["architectures"], config["model_type"] = ["FooForCausalLM"], "foo"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"\['FooForCausalLM'\], which attnkit does not load; supported: .*GPT2LMHead"):
        from_pretrained(directory)


def test_missing_extra_and_misshapen_weights_are_named(saved):
    _, directory = saved

    def change(tensors):
        del tensors["transformer.h.1.mlp.c_fc.bias"]
        tensors["transformer.h.0.attn.rotary"] = attnkit.zeros(3)
        tensors["transformer.wpe.weight"] = attnkit.zeros(17, 8)

    _rewrite_weights(directory, change)
    with pytest.raises(ValueError) as error:
        from_pretrained(directory)
    message = str(error.value)
    assert "missing weights: transformer.h.1.mlp.c_fc.bias" in message
    assert "unexpected weights (attnkit's model has no place for them): transformer.h.0.attn.rotary" in message
    assert "'transformer.wpe.weight': the checkpoint has [17, 8], config.json implies [16, 8]" in message


def test_integer_weights_are_refused(saved):
    _, directory = saved
    _rewrite_weights(directory, lambda t: t.update({"transformer.ln_f.bias": attnkit.zeros(8, dtype=attnkit.int32)}))
    with pytest.raises(ValueError, match=r"must be float32, float16 or bfloat16: 'transformer.ln_f.bias' is int32"):
        from_pretrained(directory)


def test_truncated_and_corrupt_files_are_refused(saved):
    _, directory = saved
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"shard is refused: '.*model.safetensors' is not a valid .*outside the"):
        from_pretrained(directory)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="is refused: .*not UTF-8 JSON"):
        from_pretrained(directory)
    path.write_bytes(b"\x00")
    with pytest.raises(ValueError, match="is refused"):
        from_pretrained(directory)


def test_config_problems_are_named(saved):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(dict(config, n_inner=20)))
    with pytest.raises(ValueError, match="'n_inner' is 20"):
        from_pretrained(directory)
    (directory / "config.json").write_text(json.dumps(dict(config, tie_word_embeddings=False)))
    with pytest.raises(ValueError, match="'tie_word_embeddings' is False"):
        from_pretrained(directory)
    (directory / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="should hold a JSON object"):
        from_pretrained(directory)
    (directory / "config.json").write_text('{"n_embd": 8, "n_embd": 9}')
    with pytest.raises(ValueError, match="duplicate key 'n_embd'"):
        from_pretrained(directory)


def test_pickle_checkpoints_are_not_read(saved):
    _, directory = saved
    os.unlink(directory / "model.safetensors")
    (directory / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin: attnkit reads safetensors only"):
        from_pretrained(directory)


def _shard(directory, tensors_by_file: dict, weight_map=None):
    os.unlink(directory / "model.safetensors")
    for file, tensors in tensors_by_file.items():
        attnkit.save(tensors, directory / file)
    if weight_map is None:
        weight_map = {name: file for file, tensors in tensors_by_file.items() for name in tensors}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _split(directory) -> tuple:
    tensors = dict(attnkit.load(directory / "model.safetensors", mmap=False))
    names = sorted(tensors)
    half = len(names) // 2
    return {n: tensors[n] for n in names[:half]}, {n: tensors[n] for n in names[half:]}


def test_shards_load_and_inconsistent_indexes_are_refused(saved):
    model, directory = saved
    first, second = _split(directory)
    _shard(directory, {"model-00001-of-00002.safetensors": first, "model-00002-of-00002.safetensors": second})
    _same_weights(from_pretrained(directory), model)

    index = json.loads((directory / "model.safetensors.index.json").read_text())
    moved = sorted(first)[0]
    index["weight_map"][moved] = "model-00002-of-00002.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"the index puts {moved} in it, but it lacks them"):
        from_pretrained(directory)
    index["weight_map"][moved] = "../elsewhere.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="expected a file name in the directory"):
        from_pretrained(directory)
    index["weight_map"][moved] = "model-00003-of-00003.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="model-00003-of-00003.safetensors', named by .* does not exist"):
        from_pretrained(directory)


def test_a_truncated_shard_is_refused_before_anything_loads(saved):
    _, directory = saved
    first, second = _split(directory)
    _shard(directory, {"a.safetensors": first, "b.safetensors": second})
    data = (directory / "b.safetensors").read_bytes()
    (directory / "b.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"shard is refused: '.*b.safetensors' is not a valid"):
        from_pretrained(directory)


def test_saving_over_a_sharded_checkpoint_removes_its_shards(saved):
    model, directory = saved
    first, second = _split(directory)
    _shard(directory, {"a.safetensors": first, "b.safetensors": second})
    other = _gpt(seed=1)
    other.save_pretrained(directory)
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]
    _same_weights(from_pretrained(directory), other)


def test_dtype_argument(saved):
    _, directory = saved
    assert from_pretrained(directory, dtype=attnkit.float32).wte.weight.dtype == attnkit.float32
    assert from_pretrained(directory, dtype="float32") is not None
    with pytest.raises(ValueError, match="argument 'dtype' expected None, float32 or bfloat16, got"):
        from_pretrained(directory, dtype=attnkit.float16)
    with pytest.raises(ValueError, match="argument 'dtype' expected None, float32 or bfloat16, got 'int8'"):
        from_pretrained(directory, dtype="int8")


def test_loading_in_bfloat16_rounds_each_weight_once(saved):
    model, directory = saved
    loaded = from_pretrained(directory, dtype=attnkit.bfloat16)
    expected = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == attnkit.bfloat16, name
        rounded = expected[name].to(attnkit.bfloat16).to(attnkit.float32)
        np.testing.assert_array_equal(tensor.to(attnkit.float32).numpy(), rounded.numpy(), err_msg=name)


def test_save_refuses_what_no_architecture_fits(tmp_path):
    # The class must express the model exactly: config -> config.json -> config gives it back.
    with pytest.raises(ValueError, match=r"fits this GPT: GPT2LMHeadModel cannot express bias=False \(it has True\)"):
        _gpt(bias=False).save_pretrained(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _gpt().save_pretrained(tmp_path / "file")


def test_registry_lists_and_guards():
    assert "GPT2LMHeadModel" in hf.supported_architectures()
    with pytest.raises(ValueError, match="registered already"):
        hf.register(hf.registered()["GPT2LMHeadModel"])
