"""Optimizers and learning-rate schedules. ``attnkit.optim.functional``
holds the fused update kernels."""

from . import functional, lr_scheduler
from .lr_scheduler import InverseSqrtLR, LRScheduler, WarmupCosineLR, WarmupLinearLR
from .optimizer import SGD, AdamW, Optimizer, weight_decay_groups

__all__ = [
    "functional",
    "lr_scheduler",
    "Optimizer",
    "AdamW",
    "SGD",
    "weight_decay_groups",
    "LRScheduler",
    "InverseSqrtLR",
    "WarmupCosineLR",
    "WarmupLinearLR",
]
