"""Differentiable ops over attnkit tensors (``import attnkit.nn.functional as F``).

One module per op family; each op is an autograd Function around a native
kernel: forward saves what backward needs, backward calls the backward kernel.
"""

from .activation import gelu
from .linear import linear, matmul

__all__ = ["gelu", "linear", "matmul"]
