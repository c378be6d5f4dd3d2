"""LoRA adapters against the ``peft`` package: an adapter that PEFT trains
and saves loads into attnkit's model of the same checkpoint and gives PEFT's
logits; one that attnkit saves loads in PEFT (PeftModel.from_pretrained) and
gives attnkit's. GPT-2 (Conv1D projections, fan_in_fan_out, q/k/v stacked
in c_attn) and Llama (separate q/k/v projections that attnkit fuses into
qkv_proj: an adapter per row range)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import require, right_padded

import attnkit
from attnkit import lora
from attnkit.models import from_pretrained

torch, transformers = require()
peft = pytest.importorskip("peft", reason="needs the test-hf extra: pip install '.[test-hf]' (peft)")

VOCAB = 97


def _randomized(model, seed: int, scale: float):
    """Every parameter moved by noise: the adapters' B leaves zero, and the
    base weights spread, so a wrong layout cannot hide in small numbers."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln_" in name:
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
            else:
                parameter.add_(scale * torch.randn_like(parameter))
    return model


def _hf_base(kind: str):
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=48, n_layer=2, n_head=4)
        return _randomized(transformers.GPT2LMHeadModel(config).eval(), 0, 0.1)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    return _randomized(transformers.LlamaForCausalLM(config).eval(), 0, 0.05)


# PEFT's module names and attnkit's targets for the same projections.
TARGETS = {
    "gpt2": (["c_attn", "c_proj", "c_fc"], ("qkv_proj", "out_proj", "fc1", "fc2")),
    "llama": (["q_proj", "v_proj", "o_proj", "down_proj"], ("q_proj", "v_proj", "out_proj", "fc2")),
}


def _logits_hf(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.float().numpy()


def _logits_ours(model, ids, mask):
    with attnkit.no_grad():
        return model.eval()(attnkit.from_numpy(ids), key_padding_mask=attnkit.from_numpy(mask == 0)).numpy()


def _assert_same(ours, theirs, mask):
    real = mask.astype(bool)
    assert_logits_close(ours[real], theirs[real])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_an_adapter_peft_saved_loads_into_attnkit(kind, tmp_path):
    base = _hf_base(kind)
    base.save_pretrained(tmp_path / "base")
    hf_targets, _ = TARGETS[kind]
    config = peft.LoraConfig(r=4, lora_alpha=12, target_modules=hf_targets, fan_in_fan_out=kind == "gpt2")
    tuned = peft.get_peft_model(base, config)
    torch.manual_seed(2)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.2 * torch.randn_like(parameter))
    tuned.eval().save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 4

    model = from_pretrained(tmp_path / "base")
    ids, mask = right_padded([9, 5], VOCAB, seed=3)
    plain = _logits_ours(model, ids, mask)
    lora.load_adapter(model, tmp_path / "adapter")
    adapted = _logits_ours(model, ids, mask)
    _assert_same(adapted, _logits_hf(tuned, ids, mask), mask)
    assert np.abs(adapted - plain).max() > 0.1 * np.abs(plain).max()  # the adapters matter here
    # merged: the same model in one GEMM per projection
    lora.merge(model)
    _assert_same(_logits_ours(model, ids, mask), _logits_hf(tuned, ids, mask), mask)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_an_adapter_attnkit_saved_loads_in_peft(kind, tmp_path):
    base = _hf_base(kind)
    base.save_pretrained(tmp_path / "base")
    _, targets = TARGETS[kind]
    model = from_pretrained(tmp_path / "base")
    lora.apply(model, r=3, alpha=5, targets=targets)
    rng = np.random.default_rng(4)
    for _, module in lora.lora_modules(model):
        np.asarray(module.lora_B._array)[...] = 0.2 * rng.standard_normal(module.lora_B.shape)
    lora.save_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(tmp_path / "base"))

    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids, mask = right_padded([7, 11], VOCAB, seed=5)
    _assert_same(_logits_ours(model, ids, mask), _logits_hf(theirs, ids, mask), mask)
