"""LoRA: LoRALinear against a float64 reference, gradients only in the
adapters, merge/unmerge, generation merged and unmerged, PEFT's file format
(and peft itself when installed), fine-tuning on a second text, and the
errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnkit
import attnkit.nn.functional as F
from attnkit import lora, nn
from attnkit.models import GPT, GPTConfig
from attnkit.nn import LoRALinear


def _array(values) -> attnkit.Tensor:
    return attnkit.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _random_adapter(module: LoRALinear, rng) -> None:
    # B starts at zero; give it values so the update is not trivially zero.
    np.asarray(module.lora_B._array)[...] = rng.standard_normal(module.lora_B.shape).astype(np.float32) * 0.1


@pytest.mark.parametrize("activation", [None, "gelu_tanh", "relu"])
@pytest.mark.parametrize("slices", [None, [(0, 4), (9, 15)]])
def test_lora_linear_against_float64(activation, slices):
    rng = np.random.default_rng(0)
    attnkit.manual_seed(0)
    layer = LoRALinear(6, 15, r=3, alpha=5.0, activation=activation, slices=slices)
    _random_adapter(layer, rng)
    x = rng.standard_normal((2, 4, 6))
    y = layer(_array(x))
    w = np.asarray(layer.weight._array, np.float64)
    b = np.asarray(layer.bias._array, np.float64)
    a_all = np.asarray(layer.lora_A._array, np.float64)
    b_all = np.asarray(layer.lora_B._array, np.float64)
    pre = x @ w.T + b
    row = 0
    for s, (start, stop) in enumerate(layer.slices):
        a = a_all[s * 3 : (s + 1) * 3]
        pre[..., start:stop] += (5.0 / 3) * (x @ a.T) @ b_all[row : row + stop - start].T
        row += stop - start
    if activation == "relu":
        expected = np.maximum(pre, 0)
    elif activation == "gelu_tanh":
        expected = 0.5 * pre * (1 + np.tanh(np.sqrt(2 / np.pi) * (pre + 0.044715 * pre**3)))
    else:
        expected = pre
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_lora_linear_gradients_by_finite_differences():
    rng = np.random.default_rng(1)
    attnkit.manual_seed(1)
    layer = LoRALinear(5, 7, r=2, alpha=4.0, slices=[(1, 3), (4, 7)])
    _random_adapter(layer, rng)
    x = _array(rng.standard_normal((3, 5)))
    upstream = rng.standard_normal((3, 7))
    (layer(x) * _array(upstream)).sum().backward()
    for parameter in (layer.lora_A, layer.lora_B):
        values = np.asarray(parameter._array)
        numeric = np.zeros(values.shape)
        for index in np.ndindex(values.shape):
            saved = values[index]
            outputs = []
            for delta in (1e-2, -1e-2):
                values[index] = saved + delta
                with attnkit.no_grad():
                    outputs.append(float((layer(x).detach().numpy().astype(np.float64) * upstream).sum()))
            values[index] = saved
            numeric[index] = (outputs[0] - outputs[1]) / 2e-2
        np.testing.assert_allclose(parameter.grad.detach().numpy(), numeric, rtol=2e-3, atol=2e-3)


def _tiny_gpt(seed=0, **overrides):
    attnkit.manual_seed(seed)
    settings = dict(vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=16)
    settings.update(overrides)
    return GPT(GPTConfig(**settings))


def test_apply_freezes_the_base_and_trains_only_adapters():
    model = _tiny_gpt()
    lora.apply(model, r=4, alpha=8, targets=("qkv_proj", "fc2"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        f"blocks.{i}.{m}.{p}"
        for i in range(2)
        for m in ("self_attn.qkv_proj", "feed_forward.fc2")
        for p in ("lora_A", "lora_B")
    }
    ids = attnkit.from_numpy(np.arange(12, dtype=np.int64).reshape(2, 6) % 29)
    loss = F.cross_entropy(model(ids).reshape(-1, 29), ids.reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    optimizer = attnkit.optim.AdamW(attnkit.optim.weight_decay_groups(model, 0.1), lr=1e-3)
    optimizer.step()
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in optimizer.state} <= held


def test_a_fresh_adapter_changes_nothing_and_merge_is_exact():
    model = _tiny_gpt()
    ids = attnkit.from_numpy(np.arange(10, dtype=np.int64).reshape(1, 10) % 29)
    with attnkit.no_grad():
        before = model(ids).detach().numpy().copy()
    lora.apply(model, r=2, targets=("qkv_proj", "out_proj", "fc1", "fc2"))
    with attnkit.no_grad():
        np.testing.assert_array_equal(model(ids).detach().numpy(), before)  # B = 0: the update is exactly zero
    rng = np.random.default_rng(2)
    for _, module in lora.lora_modules(model):
        _random_adapter(module, rng)
    base = {n: p.detach().numpy().copy() for n, p in model.named_parameters() if n.endswith("weight")}
    model.eval()
    with attnkit.no_grad():
        unmerged = model(ids).detach().numpy().copy()
    assert not np.array_equal(unmerged, before)
    lora.merge(model)
    with attnkit.no_grad():
        merged = model(ids).detach().numpy()
    np.testing.assert_allclose(merged, unmerged, rtol=1e-5, atol=1e-5)
    # the merged weight is the float64 sum rounded once
    module = model.blocks[0].self_attn.qkv_proj
    expected = (base["blocks.0.self_attn.qkv_proj.weight"].astype(np.float64) + module.delta_weight()).astype(
        np.float32
    )
    np.testing.assert_array_equal(module.weight.detach().numpy(), expected)
    lora.unmerge(model)
    for name, values in base.items():
        np.testing.assert_allclose(dict(model.named_parameters())[name].detach().numpy(), values, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="not merged"):
        lora.unmerge(model)


def test_generation_merged_equals_unmerged():
    model = _tiny_gpt(3)
    lora.apply(model, r=4, targets=("qkv_proj", "fc1"))
    rng = np.random.default_rng(3)
    for _, module in lora.lora_modules(model):
        _random_adapter(module, rng)
    model.eval()
    prompt = attnkit.from_numpy(np.array([[1, 2, 3]], np.int64))
    unmerged = model.generate(prompt, 8, temperature=0).detach().numpy()
    lora.merge(model)
    merged = model.generate(prompt, 8, temperature=0).detach().numpy()
    np.testing.assert_array_equal(merged, unmerged)
    lora.merge_and_unload(model)
    assert not lora.lora_modules(model)
    np.testing.assert_array_equal(model.generate(prompt, 8, temperature=0).detach().numpy(), unmerged)


def test_save_and_load_adapter_in_peft_format(tmp_path):
    model = _tiny_gpt(4)
    lora.apply(model, r=3, alpha=6, targets=("qkv_proj", "out_proj", "fc1", "fc2"))
    rng = np.random.default_rng(4)
    for _, module in lora.lora_modules(model):
        _random_adapter(module, rng)
    lora.save_adapter(model, tmp_path / "adapter", base_model_name_or_path="tiny-gpt")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 3 and config["lora_alpha"] == 6
    assert config["fan_in_fan_out"] is True  # GPT-2's Conv1D
    assert config["base_model_name_or_path"] == "tiny-gpt"
    assert sorted(config["target_modules"]) == ["c_attn", "c_fc", "c_proj"]
    tensors = attnkit.load(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" in tensors
    assert tuple(tensors["base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight"].shape) == (64, 3)
    assert tuple(tensors["base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight"].shape) == (3, 64)
    assert len(tensors) == 2 * 4 * 2

    # into a fresh copy of the base model: the adapters are put in place and filled
    fresh = _tiny_gpt(4)
    lora.load_adapter(fresh, tmp_path / "adapter")
    ids = attnkit.from_numpy(np.arange(8, dtype=np.int64).reshape(1, 8))
    model.eval(), fresh.eval()
    with attnkit.no_grad():
        np.testing.assert_array_equal(fresh(ids).detach().numpy(), model(ids).detach().numpy())
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == set(lora.adapter_state_dict(model))
    # into a model that has the same adapters already
    again = _tiny_gpt(4)
    lora.apply(again, r=3, alpha=6, targets=("qkv_proj", "out_proj", "fc1", "fc2"))
    lora.load_adapter(again.eval(), tmp_path / "adapter")
    with attnkit.no_grad():
        np.testing.assert_array_equal(again(ids).detach().numpy(), model(ids).detach().numpy())


def test_adapter_of_a_model_no_hf_architecture_fits_uses_attnkit_names(tmp_path):
    attnkit.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    lora.apply(model, r=2, targets=("0",))
    lora.save_adapter(model, tmp_path)
    tensors = attnkit.load(str(tmp_path / "adapter_model.safetensors"))
    assert sorted(tensors) == ["base_model.model.0.lora_A.weight", "base_model.model.0.lora_B.weight"]
    fresh = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    lora.load_adapter(fresh, tmp_path)
    assert isinstance(fresh[0], LoRALinear) and not isinstance(fresh[1], LoRALinear)


def test_qkv_parts_get_adapters_of_their_own():
    model = _tiny_gpt(5)
    lora.apply(model, r=2, targets=("q_proj", "v_proj"))
    module = model.blocks[0].self_attn.qkv_proj
    assert module.slices == ((0, 16), (32, 48))
    assert tuple(module.lora_A.shape) == (4, 16) and tuple(module.lora_B.shape) == (32, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"LoRALinear: argument 'r' expected an integer in \[1, "):
        LoRALinear(4, 4, r=0)
    for alpha in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="argument 'alpha' expected a positive finite number"):
            LoRALinear(4, 4, alpha=alpha)
    with pytest.raises(ValueError, match="argument 'dropout'"):
        LoRALinear(4, 4, dropout=1.0)
    with pytest.raises(ValueError, match="argument 'slices'"):
        LoRALinear(4, 6, slices=[(2, 4), (3, 5)])
    model = _tiny_gpt()
    with pytest.raises(ValueError, match="lora.apply: argument 'r' expected an integer >= 1"):
        lora.apply(model, r=-1)
    with pytest.raises(ValueError, match="'attn_proj', which names no Linear.*'qkv_proj'"):
        lora.apply(model, targets=("attn_proj",))
    with pytest.raises(ValueError, match="choose one"):
        lora.apply(model, targets=("qkv_proj", "q_proj"))
    with pytest.raises(ValueError, match="has no LoRA adapters"):
        lora.merge(model)
    lora.apply(model)
    with pytest.raises(ValueError, match="has LoRA adapters already"):
        lora.apply(model)


def test_peft_adapter_config_that_attnkit_cannot_run_is_refused(tmp_path):
    model = _tiny_gpt()
    lora.apply(model, r=2)
    lora.save_adapter(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps(dict(config, use_dora=True)))
    with pytest.raises(ValueError, match="use_dora"):
        lora.load_adapter(_tiny_gpt(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    other = _tiny_gpt(n_layer=1)
    with pytest.raises(ValueError, match="transformer.h.1.attn.c_attn"):
        lora.load_adapter(other, tmp_path)
    assert not [m for m in other.modules() if isinstance(m, LoRALinear)]  # nothing changed


def test_attnkit_train_lora_fine_tunes_a_run_on_a_second_text(tmp_path):
    from attnkit import cli
    from attnkit.data import load_text
    from attnkit.training import load_run

    text = load_text()[:60_000]
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(text, encoding="utf-8")
    # A second text over the same characters, distributed differently: every line reversed.
    second.write_text("\n".join(line[::-1] for line in text.splitlines()), encoding="utf-8")
    model_flags = ["--n-layer", "2", "--n-head", "4", "--n-embd", "192", "--block-size", "32", "--batch-size", "8"]
    common = ["--eval-iters", "4", "--no-progress", "--lr", "3e-3", "--warmup-iters", "5"]
    base = str(tmp_path / "base")
    assert cli.main(["train", "--data", str(first), *model_flags, *common, "--max-iters", "60", "--out", base]) == 0
    tuned = str(tmp_path / "tuned")
    argv = ["train", "--data", str(second), "--init-from", base, "--lora-r", "8", "--max-iters", "60", "--out", tuned]
    assert cli.main([*argv, *common, "--eval-interval", "60"]) == 0
    records = [json.loads(line) for line in open(f"{tuned}/metrics.jsonl")]
    assert records[0]["step"] == 0 and records[-1]["step"] == 60
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.05, records

    model, _, metadata = load_run(tuned)
    assert metadata["train"]["n_embd"] == 192  # from the base run
    adapters = lora.adapter_state_dict(model)
    trainable = sum(t.numel() for t in adapters.values())
    assert trainable < 0.02 * model.num_parameters()
    # the base weights did not move; the optimizer holds the adapters only
    base_model, _, _ = load_run(base)
    base_weights = base_model.state_dict()
    for name, tensor in model.state_dict().items():
        if name not in adapters:
            np.testing.assert_array_equal(tensor.detach().numpy(), base_weights[name].detach().numpy(), err_msg=name)
    state = attnkit.load(f"{tuned}/training_state.safetensors")["optimizer"]
    held = sum(len(group["params"]) for group in state["param_groups"])
    assert held == len(adapters) and len(state["state"]) == len(adapters)
    # and the adapter alone, in PEFT's format, gives the same model on the base
    lora.load_adapter(base_model, f"{tuned}/adapter")
    ids = attnkit.from_numpy(np.arange(20, dtype=np.int64).reshape(2, 10) % 10)
    with attnkit.no_grad():
        np.testing.assert_array_equal(base_model.eval()(ids).numpy(), model(ids).numpy())


def test_attnkit_train_lora_settings_are_checked(tmp_path, capsys):
    from attnkit import cli
    from attnkit.data import load_text

    data = tmp_path / "text.txt"
    data.write_text(load_text()[:5_000], encoding="utf-8")
    common = ["train", "--data", str(data), "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8"]
    common += ["--batch-size", "2", "--max-iters", "1", "--eval-iters", "1", "--no-progress"]
    assert cli.main([*common, "--lora-r", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "setting 'lora_r' expected an int >= 0" in capsys.readouterr().err
    assert (
        cli.main([*common, "--lora-r", "4", "--lora-targets", "qkv_proj,attn_proj", "--out", str(tmp_path / "b")]) == 2
    )
    error = capsys.readouterr().err
    assert "setting 'lora_targets'" in error and "'attn_proj', which names no Linear" in error
    assert (
        cli.main([*common, "--lora-r", "4", "--init-from", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    )
    assert "is not a directory" in capsys.readouterr().err


def test_lora_with_gradient_checkpointing_gives_the_same_adapter_gradients():
    # The blocks' inputs need no gradient (the embeddings are frozen): the
    # checkpoints exist for the adapters inside them alone.
    ids = attnkit.from_numpy(np.random.default_rng(6).integers(0, 29, size=(2, 10)).astype(np.int64))

    def grads(checkpointing):
        model = _tiny_gpt(6, dropout=0.2, gradient_checkpointing=checkpointing)
        lora.apply(model, r=2, dropout=0.1, targets=("qkv_proj", "fc1"))
        for _, module in lora.lora_modules(model):
            _random_adapter(module, np.random.default_rng(7))
        attnkit.manual_seed(9)
        F.cross_entropy(model.train()(ids).reshape(-1, 29), ids.reshape(-1)).backward()
        return {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.requires_grad}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) == 8
    for name in plain:
        np.testing.assert_array_equal(checkpointed[name], plain[name], err_msg=name)


@pytest.mark.parametrize("dtype", [attnkit.float16, attnkit.bfloat16])
def test_half_precision_adapter_files_widen_exactly(tmp_path, dtype):
    model = _tiny_gpt(8)
    lora.apply(model, r=2, targets=("qkv_proj",))
    for _, module in lora.lora_modules(model):
        _random_adapter(module, np.random.default_rng(8))
    lora.save_adapter(model, tmp_path)
    path = str(tmp_path / "adapter_model.safetensors")
    half = {name: tensor.to(dtype) for name, tensor in attnkit.load(path).items()}
    attnkit.save(half, path)
    fresh = lora.load_adapter(_tiny_gpt(8), tmp_path)
    for name, tensor in lora.adapter_state_dict(fresh).items():
        hf_name = name.replace("blocks.", "base_model.model.transformer.h.").replace(
            "self_attn.qkv_proj", "attn.c_attn"
        )
        expected = half[f"{hf_name}.weight"].to(attnkit.float32).numpy()
        np.testing.assert_array_equal(tensor.detach().numpy(), expected, err_msg=name)
    attnkit.save({k: v.to(attnkit.int32) for k, v in half.items()}, path)
    with pytest.raises(ValueError, match="not a float type"):
        lora.load_adapter(_tiny_gpt(8), tmp_path)
