"""Differentiable ops over attnkit tensors (``import attnkit.nn.functional as F``).

One module per op family; each op is an autograd Function around a native
kernel: forward saves what backward needs, backward calls the backward kernel.
"""

from .activation import gelu
from .attention import attention
from .dropout import dropout
from .embedding import embedding
from .linear import linear, matmul
from .position import rope, sinusoidal_position_encoding

__all__ = [
    "attention", "dropout", "embedding", "gelu", "linear", "matmul", "rope",
    "sinusoidal_position_encoding",
]
