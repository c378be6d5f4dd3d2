"""Differentiable ops over attnkit tensors (``import attnkit.nn.functional as F``).

One module per op family; each op is an autograd Function around a native
kernel: forward saves what backward needs, backward calls the backward kernel.
"""

from ...ops.elementwise import (
    add,
    argmax,
    div,
    eq,
    ge,
    gt,
    le,
    logical_not,
    lt,
    masked_fill,
    max,
    mean,
    mul,
    ne,
    neg,
    sub,
    sum,
    where,
)
from ...ops.gemm import matmul
from ...ops.shape import (
    cat,
    chunk,
    clone,
    expand,
    flatten,
    gather,
    index_select,
    narrow,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)
from .activation import gelu, relu, silu, swiglu, tanh
from .attention import attention, attention_qkv
from .dropout import dropout
from .embedding import embedding
from .linear import linear
from .loss import cross_entropy
from .moe import moe_feed_forward
from .norm import add_layer_norm, layer_norm, rms_norm
from .patch import patch_embedding, patchify
from .position import rope, rope_frequencies, sinusoidal_position_encoding
from .quantized import linear_int8
from .softmax import log_softmax, softmax

__all__ = [
    "add_layer_norm",
    "attention",
    "attention_qkv",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "linear_int8",
    "log_softmax",
    "matmul",
    "moe_feed_forward",
    "patch_embedding",
    "patchify",
    "relu",
    "rms_norm",
    "rope",
    "rope_frequencies",
    "silu",
    "sinusoidal_position_encoding",
    "softmax",
    "swiglu",
    "tanh",
    # elementwise and shape
    "add",
    "argmax",
    "div",
    "eq",
    "ge",
    "gt",
    "le",
    "logical_not",
    "lt",
    "masked_fill",
    "max",
    "mean",
    "mul",
    "ne",
    "neg",
    "sub",
    "sum",
    "where",
    "cat",
    "chunk",
    "clone",
    "expand",
    "flatten",
    "gather",
    "index_select",
    "narrow",
    "permute",
    "reshape",
    "split",
    "squeeze",
    "stack",
    "transpose",
    "unsqueeze",
]
