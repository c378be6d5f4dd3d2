"""The Vision Transformer: ViT-B/16's parameter count by formula, shapes,
bad configs and images, a finite-difference check through the whole model,
and a tiny ViT overfitting a batch."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
import attnkit.nn.functional as F
from attnkit.models import ViT, ViTConfig


def vit_parameters(c: ViTConfig) -> int:
    """Patch projection (a Conv2d with bias), [CLS], positions, the blocks
    (two LayerNorms, q/k/v and output projections, the MLP), the final
    LayerNorm and the classifier."""
    d = c.n_embd
    patch = d * c.num_channels * c.patch_size**2 + d
    positions = (c.num_patches + 1) * d
    block = 2 * 2 * d + 4 * (d * d + d) + (d * c.d_ff + c.d_ff) + (c.d_ff * d + d)
    return patch + d + positions + c.n_layer * block + 2 * d + d * c.num_classes + c.num_classes


def test_vit_base_parameter_count():
    config = ViTConfig.base()
    assert (config.image_size, config.patch_size, config.num_patches, config.num_classes) == (224, 16, 196, 1000)
    assert vit_parameters(config) == 86_567_656  # "86.6M" in the paper's table 1
    with attnkit.nn.init.skip_init():
        model = ViT(config)
    assert model.num_parameters() == 86_567_656


def tiny_config(**changes):
    values = dict(image_size=8, patch_size=2, num_channels=1, num_classes=10, n_layer=2, n_head=2, n_embd=16, d_ff=32)
    values.update(changes)
    return ViTConfig(**values)


def test_shapes_and_bad_inputs():
    attnkit.manual_seed(0)
    config = tiny_config()
    model = ViT(config)
    assert model.num_parameters() == vit_parameters(config)
    images = attnkit.from_numpy(np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32))
    assert model(images).shape == (3, 10)
    assert model.forward_features(images).shape == (3, 17, 16)
    with pytest.raises(ValueError, match=r"ViTConfig: field 'image_size' expected a multiple of patch_size=3"):
        ViT(tiny_config(patch_size=3))
    with pytest.raises(ValueError, match="field 'n_layer'"):
        ViT(tiny_config(n_layer=0))
    with pytest.raises(ValueError, match=r"ViT: argument 'images' expected \[batch, 1, 8, 8\]"):
        model(attnkit.from_numpy(np.zeros((3, 1, 8, 6), np.float32)))


def test_gradients_by_finite_differences():
    """Float64 central differences of the float32 model's loss, in a few
    directions of every parameter at once (a directional derivative)."""
    attnkit.manual_seed(1)
    model = ViT(tiny_config(n_layer=1, image_size=4, d_ff=8, n_embd=8))
    rng = np.random.default_rng(1)
    images = attnkit.from_numpy(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    labels = attnkit.from_numpy(np.array([3, 7]))
    params = list(model.parameters())

    def loss_value():
        with attnkit.no_grad():
            return float(F.cross_entropy(model(images), labels).item())

    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    grads = [p.grad.numpy().astype(np.float64) for p in params]
    for _ in range(3):
        directions = [rng.standard_normal(p.shape) for p in params]
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in directions))
        directions = [d / norm for d in directions]  # a unit step in the space of every parameter
        analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, directions))
        step = 1e-2
        originals = [p.detach().numpy().copy() for p in params]
        values = []
        for sign in (1, -1):
            for p, o, d in zip(params, originals, directions):
                p.detach().numpy()[...] = (o + sign * step * d).astype(np.float32)
            values.append(loss_value())
        for p, o in zip(params, originals):
            p.detach().numpy()[...] = o
        numeric = (values[0] - values[1]) / (2 * step)
        assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-3)


def test_tiny_vit_overfits_a_batch():
    attnkit.manual_seed(2)
    model = ViT(tiny_config())
    rng = np.random.default_rng(2)
    images = attnkit.from_numpy(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    labels = attnkit.from_numpy(rng.integers(0, 10, 16))
    optimizer = attnkit.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(100):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    predictions = model(images).detach().numpy().argmax(axis=1)
    np.testing.assert_array_equal(predictions, labels.numpy())
