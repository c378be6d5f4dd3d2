"""ViTForImageClassification checkpoints against transformers: tiny
random-weight models saved by transformers, loaded by attnkit as its ViT;
logits on random pixel values (patch pixel order, [CLS], positions, pre-LN
blocks with the checkpoint's eps, the classifier on [CLS]), non-RGB images,
a bfloat16 checkpoint, save_pretrained that transformers reloads to the
same weights and logits, and configs attnkit cannot run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_logits_close
from hf_peers import require

import attnkit
from attnkit.models import ViT, ViTConfig, from_pretrained
from attnkit.models.hf import CheckpointError

torch, transformers = require()


def _hf_vit(seed: int = 0, **overrides):
    """A tiny ViTForImageClassification with random weights: norms around
    1, biases and the [CLS] token and positions nonzero."""
    torch.manual_seed(seed)
    settings = dict(
        image_size=12,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        layer_norm_eps=1e-6,
        num_labels=7,
    )
    settings.update(overrides)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**settings)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.3 * torch.randn_like(parameter))
            else:
                parameter.add_(0.2 * torch.randn_like(parameter))
    return model


def _assert_same_logits(model, hf_model, batch: int = 3, seed: int = 0) -> None:
    config = model.config
    pixels = np.random.default_rng(seed).standard_normal(
        (batch, config.num_channels, config.image_size, config.image_size), dtype=np.float32
    )
    with torch.no_grad():
        theirs = hf_model(pixel_values=torch.from_numpy(pixels)).logits.numpy()
    with attnkit.no_grad():
        ours = model(attnkit.from_numpy(pixels)).numpy()
    assert ours.shape == theirs.shape == (batch, config.num_classes)
    assert_logits_close(ours, theirs)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_channels": 1, "image_size": 16, "patch_size": 8, "layer_norm_eps": 1e-12, "num_labels": 3}],
    ids=["rgb", "grey"],
)
def test_logits_match_transformers(tmp_path, overrides):
    hf_model = _hf_vit(**overrides)
    hf_model.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    assert isinstance(model, ViT) and not model.training
    config = hf_model.config
    assert (model.config.image_size, model.config.patch_size, model.config.num_channels) == (
        config.image_size,
        config.patch_size,
        config.num_channels,
    )
    assert (model.config.num_classes, model.config.layer_norm_eps) == (config.num_labels, config.layer_norm_eps)
    _assert_same_logits(model, hf_model)


def test_save_pretrained_reloads_in_transformers_to_the_same_weights_and_logits(tmp_path):
    hf_model = _hf_vit(seed=1, num_labels=2, id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    hf_model.save_pretrained(tmp_path / "theirs")
    model = from_pretrained(tmp_path / "theirs")
    model.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["architectures"] == ["ViTForImageClassification"] and saved["id2label"] == {"0": "cat", "1": "dog"}
    reloaded = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours").eval()
    theirs = hf_model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, theirs[key]), key
    _assert_same_logits(model, reloaded, seed=2)
    assert from_pretrained(tmp_path / "ours").config == model.config


def test_a_model_built_from_scratch_saves_for_transformers(tmp_path):
    attnkit.manual_seed(3)
    model = ViT(
        ViTConfig(image_size=8, patch_size=2, num_channels=1, num_classes=10, n_layer=2, n_head=2, n_embd=16, d_ff=32)
    )
    model.eval()
    model.save_pretrained(tmp_path)
    hf_model = transformers.ViTForImageClassification.from_pretrained(tmp_path).eval()
    assert hf_model.config.num_labels == 10
    _assert_same_logits(model, hf_model, seed=4)


def test_a_bfloat16_checkpoint_loads_exactly(tmp_path):
    _hf_vit(seed=5).to(torch.bfloat16).save_pretrained(tmp_path)
    hf_model = transformers.ViTForImageClassification.from_pretrained(tmp_path, dtype=torch.float32).eval()
    model = from_pretrained(tmp_path)
    np.testing.assert_array_equal(
        model.patch_embed.weight.detach().numpy(),
        hf_model.vit.embeddings.patch_embeddings.projection.weight.detach().numpy(),
    )
    _assert_same_logits(model, hf_model, seed=6)


def test_configs_attnkit_cannot_run_are_refused(tmp_path):
    _hf_vit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for change, message in (
        ({"image_size": 14}, "'image_size' expected a multiple of patch_size=4, got 14"),
        ({"image_size": [12, 16]}, "square images"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"qkv_bias": False}, "qkv_bias"),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=message):
            from_pretrained(tmp_path)


def test_a_wrong_shape_is_refused_naming_the_key(tmp_path):
    _hf_vit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "image_size": 16}))
    with pytest.raises(
        CheckpointError, match=r"'vit\.embeddings\.position_embeddings': the checkpoint has \[1, 10, 32\]"
    ):
        from_pretrained(tmp_path)
