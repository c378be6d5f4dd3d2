"""Optimizers and learning-rate schedules. ``attnkit.optim.functional``
holds the fused update kernels; ``ZeroRedundancyOptimizer`` shards an
optimizer's state across MPI ranks."""

from . import functional, lr_scheduler
from .lr_scheduler import InverseSqrtLR, LRScheduler, WarmupCosineLR, WarmupLinearLR
from .optimizer import SGD, AdamW, Optimizer, weight_decay_groups
from .zero import ZeroRedundancyOptimizer

__all__ = [
    "functional",
    "lr_scheduler",
    "Optimizer",
    "AdamW",
    "SGD",
    "weight_decay_groups",
    "ZeroRedundancyOptimizer",
    "LRScheduler",
    "InverseSqrtLR",
    "WarmupCosineLR",
    "WarmupLinearLR",
]
