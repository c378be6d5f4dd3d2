"""Image patches: patchify against a numpy reshape, its backward (the inverse
permutation), patch_embedding against a direct strided convolution, and bad
arguments."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_reduction_close

import attnkit
import attnkit.nn.functional as F
from attnkit import _C


def patchify_reference(images, p):
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // p, p, w // p, p)  # b, c, gy, i, gx, j
    return grid.transpose(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)


def conv_reference(images, weight, bias, p, dtype=np.float64):
    """The strided convolution, patch by patch, as a sum over (c, i, j) in order."""
    b, c, h, w = images.shape
    d = weight.shape[0]
    out = np.zeros((b, h // p, w // p, d), dtype)
    for gy in range(h // p):
        for gx in range(w // p):
            patch = images[:, :, gy * p : (gy + 1) * p, gx * p : (gx + 1) * p].astype(dtype)
            acc = np.zeros((b, d), dtype)
            for ci in range(c):
                for i in range(p):
                    for j in range(p):
                        acc = (acc + patch[:, ci, i, j][:, None] * weight[:, ci, i, j].astype(dtype)[None, :]).astype(
                            dtype
                        )
            out[:, gy, gx] = acc + bias.astype(dtype)
    return out.reshape(b, -1, d)


@pytest.mark.parametrize("shape, p", [((2, 3, 8, 12), 4), ((1, 1, 8, 8), 2), ((3, 2, 5, 5), 5), ((2, 3, 7, 7), 1)])
def test_patchify_and_backward(shape, p):
    rng = np.random.default_rng(sum(shape))
    images = rng.standard_normal(shape).astype(np.float32)
    x = attnkit.from_numpy(images).requires_grad_()
    out = F.patchify(x, p)
    expected = patchify_reference(images, p)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    grad = rng.standard_normal(expected.shape).astype(np.float32)
    out.backward(attnkit.from_numpy(grad))
    # the backward of a permutation scatters each gradient back where its pixel came from
    back = np.zeros_like(images)
    b, c, h, w = shape
    back[...] = grad.reshape(b, h // p, w // p, c, p, p).transpose(0, 3, 1, 4, 2, 5).reshape(shape)
    np.testing.assert_array_equal(x.grad.numpy(), back)


def test_patch_embedding_matches_a_strided_convolution():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 3, 12, 8)).astype(np.float32)
    weight = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    tensors = [attnkit.from_numpy(a).requires_grad_() for a in (images, weight, bias)]
    out = F.patch_embedding(*tensors, 4)
    assert out.shape == (2, 6, 5)
    expected = conv_reference(images, weight, bias, 4)
    assert_reduction_close(out.detach().numpy(), expected, conv_reference(images, weight, bias, 4, np.float32))
    # gradients: the convolution's, through patches (float64 by hand)
    grad = rng.standard_normal((2, 6, 5))
    out.backward(attnkit.from_numpy(grad.astype(np.float32)))
    patches = patchify_reference(images.astype(np.float64), 4)  # [2, 6, 48]
    w2 = weight.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(
        tensors[1].grad.numpy().reshape(5, -1), np.einsum("bpd,bpk->dk", grad, patches), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(tensors[2].grad.numpy(), grad.sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)
    dpatches = grad @ w2
    dimages = dpatches.reshape(2, 3, 2, 3, 4, 4).transpose(0, 3, 1, 4, 2, 5).reshape(images.shape)
    np.testing.assert_allclose(tensors[0].grad.numpy(), dimages, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    images = attnkit.from_numpy(np.zeros((1, 3, 10, 12), np.float32))
    with pytest.raises(
        ValueError, match=r"patchify: argument 'images' expected an image size divisible by patch_size=4"
    ):
        F.patchify(images, 4)
    with pytest.raises(ValueError, match="argument 'patch_size'"):
        F.patchify(images, 0)
    with pytest.raises(ValueError, match="argument 'images' expected a 4-d"):
        F.patchify(attnkit.from_numpy(np.zeros((3, 8, 8), np.float32)), 4)
    with pytest.raises(ValueError, match="patch_embedding: argument 'weight'"):
        F.patch_embedding(images, attnkit.from_numpy(np.zeros((4, 2, 2, 2), np.float32)), None, 2)
    with pytest.raises(ValueError, match="unpatchify: argument 'patches'"):
        _C.unpatchify(attnkit.from_numpy(np.zeros((1, 5, 12), np.float32))._array, 3, 4, 4, 2)
    with pytest.raises(ValueError, match="unpatchify: argument 'height'"):
        _C.unpatchify(attnkit.from_numpy(np.zeros((1, 4, 12), np.float32))._array, 3, 5, 4, 2)
