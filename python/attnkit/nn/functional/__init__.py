"""Differentiable ops over attnkit tensors (``import attnkit.nn.functional as F``).

One module per op family; each op is an autograd Function around a native
kernel: forward saves what backward needs, backward calls the backward kernel.
"""

from .activation import gelu, relu, silu, swiglu
from .attention import attention
from .dropout import dropout
from .elementwise import add, argmax, div, eq, ge, gt, le, logical_not, lt, masked_fill, max, mean, mul, ne, neg, sub, sum, where  # noqa: E501
from .embedding import embedding
from .linear import linear, matmul
from .position import rope, sinusoidal_position_encoding
from .shape import cat, chunk, clone, expand, flatten, gather, index_select, narrow, permute, reshape, split, squeeze, stack, transpose, unsqueeze  # noqa: E501

__all__ = [
    "attention", "dropout", "embedding", "gelu", "linear", "matmul", "relu", "rope", "silu",
    "sinusoidal_position_encoding", "swiglu",
    # elementwise and shape
    "add", "argmax", "div", "eq", "ge", "gt", "le", "logical_not", "lt", "masked_fill", "max", "mean", "mul",
    "ne", "neg", "sub", "sum", "where", "cat", "chunk", "clone", "expand", "flatten", "gather",
    "index_select", "narrow", "permute", "reshape", "split", "squeeze", "stack", "transpose", "unsqueeze",
]
