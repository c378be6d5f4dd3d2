"""Image patches, the Vision Transformer's input (Dosovitskiy et al., 2021):
``patchify`` cuts images into flattened non-overlapping patches (natively),
and ``patch_embedding`` projects them, the strided convolution of the paper
as one GEMM."""

from __future__ import annotations

import numbers

from ... import _C
from ...autograd import Function
from ...ops.checks import check_tensor
from ...tensor import Tensor
from .linear import linear


class _Patchify(Function):
    @staticmethod
    def forward(ctx, images, patch_size):
        ctx.image_shape = images.shape
        ctx.patch_size = patch_size
        return _C.patchify(images._array, patch_size)

    @staticmethod
    def backward(ctx, grad):
        # a permutation: its gradient is the inverse permutation
        _, channels, height, width = ctx.image_shape
        return _C.unpatchify(grad, channels, height, width, ctx.patch_size), None


def _check_patch_size(op: str, patch_size) -> int:
    if not isinstance(patch_size, numbers.Integral) or isinstance(patch_size, bool) or patch_size < 1:
        raise ValueError(f"{op}: argument 'patch_size' expected an int >= 1, got {patch_size!r}")
    return int(patch_size)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``images`` float32 [B, C, H, W], H and W multiples of ``patch_size``
    (ValueError otherwise) -> float32 [B, (H/p)(W/p), C p p]: the patches in
    row-major order of their grid, each flattened (channel, row, column) as
    a Conv2d weight [D, C, p, p] flattens. Differentiable."""
    check_tensor("patchify", "images", images)
    return _Patchify.apply(images, _check_patch_size("patchify", patch_size))


def patch_embedding(images: Tensor, weight: Tensor, bias: Tensor | None, patch_size: int) -> Tensor:
    """The ViT patch embedding, a Conv2d with kernel and stride ``patch_size``
    flattened to a sequence: ``images`` [B, C, H, W], ``weight`` [D, C, p, p]
    (a Conv2d's layout), ``bias`` [D] or None -> [B, (H/p)(W/p), D], the
    patches in row-major order of their grid. float32. Differentiable."""
    op = "patch_embedding"
    check_tensor(op, "images", images)
    check_tensor(op, "weight", weight)
    patch_size = _check_patch_size(op, patch_size)
    channels = images.shape[1] if images.ndim == 4 else None
    if weight.ndim != 4 or weight.shape[1:] != (channels, patch_size, patch_size):
        raise ValueError(
            f"{op}: argument 'weight' expected [embed_dim, channels={channels}, {patch_size}, {patch_size}], "
            f"got shape {weight.shape}"
        )
    return linear(patchify(images, patch_size), weight.reshape(weight.shape[0], -1), bias)


__all__ = ["patchify", "patch_embedding"]
