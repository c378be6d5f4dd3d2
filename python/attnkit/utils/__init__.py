"""Utilities: ``checkpoint`` (gradient checkpointing)."""

from .checkpoint import checkpoint

__all__ = ["checkpoint"]
