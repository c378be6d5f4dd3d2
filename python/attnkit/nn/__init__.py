"""Neural-network building blocks. ``attnkit.nn.functional`` (imported as F)
holds the differentiable ops."""

from . import functional, utils

__all__ = ["functional", "utils"]
