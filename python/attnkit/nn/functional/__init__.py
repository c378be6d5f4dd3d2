"""Differentiable ops over attnkit tensors (``import attnkit.nn.functional as F``).

One module per op family; each op is an autograd Function around a native
kernel: forward saves what backward needs, backward calls the backward kernel.
"""

from .activation import gelu
from .softmax import log_softmax, softmax
from .norm import add_layer_norm, layer_norm, rms_norm
from .loss import cross_entropy

__all__ = ["gelu", "softmax", "log_softmax", "layer_norm", "rms_norm", "add_layer_norm", "cross_entropy"]
