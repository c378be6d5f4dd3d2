"""The Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16
Words"): an image cut into patches, each patch linearly embedded, a learned
[CLS] token prepended, learned position embeddings added, a pre-LN
Transformer encoder, and a linear classifier on the final [CLS] state.

``ViTConfig.base()`` is ViT-B/16 as the paper trained it on ImageNet:
224x224 RGB images, 16x16 patches (196 of them), 12 layers of width 768, 12
heads, an MLP of 3072, 1000 classes: 86,567,656 parameters. The LayerNorm
eps (1e-12) and the N(0, 0.02) initialization are those of Hugging Face's
ViT, so its checkpoints' numbers carry over."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .. import nn
from ..nn import functional as F
from ..nn import init
from ..tensor import Tensor, empty, zeros
from .hf import loading as hf_loading


@dataclass
class ViTConfig:
    image_size: int = 224  # images are image_size x image_size
    patch_size: int = 16  # patches are patch_size x patch_size; image_size must be a multiple
    num_channels: int = 3
    num_classes: int = 1000
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    d_ff: int = 3072  # the MLP width
    dropout: float = 0.0
    layer_norm_eps: float = 1e-12

    @classmethod
    def base(cls) -> ViTConfig:
        """ViT-B/16 for ImageNet: 86,567,656 parameters."""
        return cls()

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _check_config(config: ViTConfig) -> None:
    for field in ("image_size", "patch_size", "num_channels", "num_classes", "n_layer", "n_head", "n_embd", "d_ff"):
        value = getattr(config, field)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"ViTConfig: field '{field}' expected an int >= 1, got {value!r}")
    if config.image_size % config.patch_size != 0:
        raise ValueError(
            f"ViTConfig: field 'image_size' expected a multiple of patch_size={config.patch_size}, "
            f"got {config.image_size}"
        )


class PatchEmbedding(nn.Module):
    """A Conv2d with kernel and stride ``patch_size``, as a sequence:
    images [B, C, H, W] -> [B, (H/p)(W/p), embed_dim] (``F.patch_embedding``).
    ``weight`` [embed_dim, C, p, p] (a Conv2d's layout), ``bias`` [embed_dim]."""

    def __init__(self, num_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.weight = nn.Parameter(empty(embed_dim, num_channels, patch_size, patch_size))
        self.bias = nn.Parameter(zeros(embed_dim))
        init.normal_(self.weight, 0.0, 0.02)

    def forward(self, images: Tensor) -> Tensor:
        return F.patch_embedding(images, self.weight, self.bias, self.patch_size)

    def extra_repr(self) -> str:
        d, c, p, _ = self.weight.shape
        return f"num_channels={c}, embed_dim={d}, patch_size={p}"


class ViT(nn.Module):
    """``logits = model(images)``: images float32 [B, num_channels,
    image_size, image_size] -> logits float32 [B, num_classes].

    Layout: ``patch_embed``, ``cls_token`` [1, 1, n_embd], ``pos_embed``
    [1, num_patches + 1, n_embd] (the [CLS] position first), ``blocks`` of
    pre-LN ``TransformerEncoderLayer`` (erf GELU), ``ln_f``, ``head``.
    Initialization: every Linear and the patch projection N(0, 0.02), the
    [CLS] token and the positions N(0, 0.02), biases 0, norms 1 and 0.
    ``forward_features(images)`` gives the final normalized states [B,
    num_patches + 1, n_embd].
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"ViT: argument 'config' expected a ViTConfig, got {type(config).__name__}")
        _check_config(config)
        self.config = config
        width = config.n_embd
        self.patch_embed = PatchEmbedding(config.num_channels, width, config.patch_size)
        self.cls_token = nn.Parameter(zeros(1, 1, width))
        self.pos_embed = nn.Parameter(zeros(1, config.num_patches + 1, width))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                config.n_head,
                dim_feedforward=config.d_ff,
                dropout=config.dropout,
                activation="gelu",
                norm_first=True,
                layer_norm_eps=config.layer_norm_eps,
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.head = nn.Linear(width, config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.patch_embed.weight, 0.0, 0.02)
        init.zeros_(self.patch_embed.bias)
        init.normal_(self.cls_token, 0.0, 0.02)
        init.normal_(self.pos_embed, 0.0, 0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def forward_features(self, images: Tensor) -> Tensor:
        config = self.config
        if not isinstance(images, Tensor):
            raise TypeError(f"ViT: argument 'images' expected an attnkit.Tensor, got {type(images).__name__}")
        expected = (config.num_channels, config.image_size, config.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"ViT: argument 'images' expected [batch, {expected[0]}, {expected[1]}, {expected[2]}], "
                f"got shape {list(images.shape)}"
            )
        batch = images.shape[0]
        patches = self.patch_embed(images)
        cls = F.expand(self.cls_token, batch, 1, config.n_embd)
        x = self.drop(F.cat([cls, patches], dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, images: Tensor) -> Tensor:
        x = self.forward_features(images)
        cls = F.narrow(x, 1, 0, 1).reshape(x.shape[0], x.shape[2])
        return self.head(cls)

    def save_pretrained(self, path, *, max_shard_size="5GB") -> None:
        """Writes a ViTForImageClassification checkpoint directory that
        ``transformers`` loads (see ``attnkit.models.hf.save_pretrained``)."""
        hf_loading.save_pretrained(self, path, max_shard_size=max_shard_size)

    def extra_repr(self) -> str:
        return f"{self.config}"


__all__ = ["ViTConfig", "ViT", "PatchEmbedding"]
