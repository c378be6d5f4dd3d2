"""Optimizers. ``attnkit.optim.functional`` holds the fused update kernels."""

from . import functional

__all__ = ["functional"]
