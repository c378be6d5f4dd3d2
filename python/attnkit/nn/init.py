"""In-place initializers (as torch.nn.init), drawing from attnkit's Philox
generator so a model built after ``attnkit.manual_seed(s)`` has the same
weights on every run and for any thread count.

Each random initializer takes ONE stream (seed, offset) from the generator
and reads its 32-bit numbers r_0, r_1, ... (see attnkit.random); element k
of the tensor (row-major) is then:

- ``uniform_``: a + (b - a) * u_k with u_k = r_k / 2^32, in [0, 1);
- ``normal_``: Box-Muller on the pair j = k // 2: with u = (r_2j + 1/2) / 2^32
  (in (0, 1), so the log is finite) and v = r_2j+1 / 2^32,
  z = sqrt(-2 ln u) * (cos 2 pi v if k is even else sin 2 pi v), and the
  element is mean + std * z.

The arithmetic is float64 numpy, rounded once to the tensor's dtype.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

from .._tensor_data import fill_from_values
from ..ops import checks
from ..random import random_words
from ..tensor import Tensor

_TWO_TO_MINUS_32 = 2.0**-32

# skip_init's flag, per thread: a model built in one thread while another
# loads a checkpoint is still initialized.
_state = threading.local()


@contextlib.contextmanager
def skip_init():
    """Inside, the initializers below leave their tensor as it is (its memory
    unwritten) and draw no random numbers: for building a model whose every
    weight is overwritten next, from a checkpoint (``attnkit.models.
    from_pretrained``). Initializing first would cost the time of drawing
    every weight, and float64 scratch of several times the model's size."""
    previous = getattr(_state, "skipping", False)
    _state.skipping = True
    try:
        yield
    finally:
        _state.skipping = previous


def _skipping() -> bool:
    return getattr(_state, "skipping", False)


def _check_floating(op: str, tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: argument 'tensor' expected an attnkit.Tensor, got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(f"{op}: argument 'tensor' expected a floating-point tensor, got {tensor.dtype}")


def _random_words(op: str, count: int, generator) -> np.ndarray:
    """``count`` 32-bit numbers (as float64) from the generator's next stream."""
    return random_words(op, count, generator).astype(np.float64)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
    """Fills ``tensor`` with numbers uniform in [a, b); returns it."""
    _check_floating("uniform_", tensor)
    a, b = checks.real("uniform_", "a", a), checks.real("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: expected a <= b, got a={a}, b={b}")
    if _skipping():
        return tensor
    u = _random_words("uniform_", tensor.numel(), generator) * _TWO_TO_MINUS_32
    fill_from_values(tensor, (a + (b - a) * u).reshape(tensor.shape))
    return tensor


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """Fills ``tensor`` with normal numbers of the given mean and standard
    deviation (Box-Muller, see the module docstring); returns it."""
    _check_floating("normal_", tensor)
    mean, std = checks.real("normal_", "mean", mean), checks.real("normal_", "std", std)
    if std < 0:
        raise ValueError(f"normal_: argument 'std' expected a non-negative number, got {std}")
    if _skipping():
        return tensor
    n = tensor.numel()
    pairs = (n + 1) // 2
    words = _random_words("normal_", 2 * pairs, generator).reshape(pairs, 2)
    radius = np.sqrt(-2.0 * np.log((words[:, 0] + 0.5) * _TWO_TO_MINUS_32))
    angle = (2.0 * math.pi * _TWO_TO_MINUS_32) * words[:, 1]
    z = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).reshape(-1)[:n]
    fill_from_values(tensor, (mean + std * z).reshape(tensor.shape))
    return tensor


def constant_(tensor: Tensor, value: float) -> Tensor:
    _check_floating("constant_", tensor)
    value = checks.real("constant_", "value", value)
    if not _skipping():
        fill_from_values(tensor, np.full(tensor.shape, value))
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def fan_in_and_fan_out(tensor: Tensor) -> tuple:
    """(fan_in, fan_out) of a weight laid out [out_features, in_features, *kernel],
    as PyTorch computes them."""
    if tensor.ndim < 2:
        raise ValueError(f"fan_in_and_fan_out: a weight needs at least 2 dimensions, got shape {tensor.shape}")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, *, generator=None) -> Tensor:
    """Glorot and Bengio (2010): uniform in [-bound, bound] with
    bound = gain * sqrt(6 / (fan_in + fan_out))."""
    _check_floating("xavier_uniform_", tensor)
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = checks.real("xavier_uniform_", "gain", gain) * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return uniform_(tensor, -bound, bound, generator=generator)


__all__ = ["skip_init", "uniform_", "normal_", "constant_", "zeros_", "ones_", "xavier_uniform_", "fan_in_and_fan_out"]
