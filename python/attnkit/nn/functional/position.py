"""Positional encodings: the sinusoidal table and rotary position embedding."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ... import _C
from ..._dtypes import int32, int64
from ...autograd import Function
from ...ops import checks
from ...ops.checks import check_tensor
from ...tensor import Tensor


def sinusoidal_position_encoding(length: int, dim: int, offset: int = 0) -> Tensor:
    """The fixed positional encoding of "Attention Is All You Need"
    (Vaswani et al., 2017, section 3.5): float32 [length, dim] with row t for
    position p = offset + t and, for i = j // 2,

        table[t, j] = sin(p / 10000^(2i/dim))   for even j,
        table[t, j] = cos(p / 10000^(2i/dim))   for odd j.

    An odd ``dim`` ends with a sine column. sin and cos are computed in
    double and only then rounded to float, so every entry is within float
    rounding of the exact value even for positions in the millions (where a
    float32 angle can be off by 0.03 radians). Each entry
    depends only on (position, column): the table for ``offset=20`` equals
    rows 20.. of the table for ``offset=0``, bit for bit.
    """
    op = "sinusoidal_position_encoding"
    length = checks.integer(op, "length", length)
    dim = checks.integer(op, "dim", dim)
    offset = checks.integer(op, "offset", offset)
    return Tensor._wrap(_C.sinusoidal_position_encoding(length, dim, offset))


class _Rope(Function):
    @staticmethod
    def forward(ctx, x, offset, base, interleaved, positions, frequencies):
        positions = None if positions is None else positions._array
        ctx.rotation = (offset, base, interleaved, positions, frequencies)
        return _C.rope_forward(x._array, offset, base, interleaved, positions, frequencies)

    @staticmethod
    def backward(ctx, grad):
        return _C.rope_backward(grad, *ctx.rotation), None, None, None, None, None


def rope(
    x: Tensor,
    offset: int = 0,
    base: float = 10000.0,
    interleaved: bool = True,
    *,
    positions: Tensor | None = None,
    frequencies=None,
) -> Tensor:
    """Rotary position embedding (RoPE; Su et al., "RoFormer", 2021) of
    ``x`` float32 [batch, seq, heads, head_dim], head_dim even. Differentiable.

    Row t of every batch entry sits at position p = offset + t (with a KV
    cache, ``offset`` is the number of cached positions); ``positions``, int
    [batch, seq], gives each row its own instead (a left-padded prompt in a
    batch starts at 0 after its padding). Pair i of each head vector,
    i < head_dim / 2, is rotated by theta_i = p * w_i with w_i =
    base^(-2i / head_dim), or the given ``frequencies`` (head_dim / 2
    positive numbers, see ``rope_frequencies``):

        (a, b) -> (a cos theta_i - b sin theta_i,  a sin theta_i + b cos theta_i).

    Which elements form pair i:

    * ``interleaved=True`` (the default): (x[2i], x[2i+1]), the adjacent pairs
      of the RoFormer paper (its equation 34) and of Meta's original LLaMA
      code, which views them as complex numbers.
    * ``interleaved=False``: (x[i], x[i + head_dim/2]), "rotate half", as in
      GPT-NeoX and the Hugging Face Llama code, whose converted checkpoints
      have q/k weights permuted for it.

    Trained from scratch, the two are the same model up to a fixed
    permutation of the q/k features; the choice matters only for loading
    weights, so pick the one the checkpoint was trained with.

    cos and sin are computed in double and only then rounded to float, so
    large positions lose no accuracy, and they depend only on (position,
    pair): decoding one position at a time with ``offset`` or ``positions``
    gives bit for bit the rows of the full sequence. The backward pass
    rotates the gradient by -theta_i (the inverse of a rotation is its
    transpose).
    """
    op = "rope"
    check_tensor(op, "x", x)
    offset = checks.integer(op, "offset", offset)
    if not isinstance(base, numbers.Real) or isinstance(base, bool):
        raise TypeError(f"rope: argument 'base' expected a float, got {type(base).__name__}")
    base = float(base)
    if not (base > 0.0 and math.isfinite(base)):
        raise ValueError(f"rope: argument 'base' expected a finite base > 0, got {base}")
    if not isinstance(interleaved, bool):
        raise TypeError(f"rope: argument 'interleaved' expected a bool, got {type(interleaved).__name__}")
    if positions is not None:
        check_tensor(op, "positions", positions)
        if positions.dtype == int32:
            positions = positions.to(int64)
        elif positions.dtype != int64:
            raise TypeError(f"rope: argument 'positions' expected int32 or int64, got {positions.dtype}")
    if frequencies is None:
        frequencies = ()
    else:
        try:
            frequencies = tuple(float(w) for w in np.asarray(frequencies, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise TypeError(
                f"rope: argument 'frequencies' expected a sequence of numbers, got {type(frequencies).__name__}"
            ) from None
    return _Rope.apply(x, offset, base, interleaved, positions, frequencies)


# The Hugging Face ``rope_type`` names this module computes frequencies for.
ROPE_SCALING_TYPES = ("default", "linear", "llama3")


def rope_frequencies(head_dim: int, base: float = 10000.0, scaling: dict | None = None) -> np.ndarray:
    """The per-pair angular frequencies of RoPE, float64 [head_dim / 2]:
    w_i = base^(-2i / head_dim), then rescaled by ``scaling``, a dict in the
    form of Hugging Face configs' ``rope_scaling``:

    - None or ``{"rope_type": "default"}``: unchanged;
    - ``{"rope_type": "linear", "factor": f}``: every w_i / f (position
      interpolation, Chen et al., 2023);
    - ``{"rope_type": "llama3", "factor": f, "low_freq_factor": lo,
      "high_freq_factor": hi, "original_max_position_embeddings": L}``
      (Llama 3.1's long-context scaling): with the wavelength 2 pi / w_i,
      pairs turning faster than L / hi wavelengths per context keep w_i,
      slower than L / lo take w_i / f, and those between blend the two
      linearly in L / wavelength.

    (``"type"`` is accepted for ``"rope_type"``, as older configs spell it.)
    """
    op = "rope_frequencies"
    if not isinstance(head_dim, numbers.Integral) or isinstance(head_dim, bool) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"{op}: argument 'head_dim' expected an even int >= 2, got {head_dim!r}")
    base = float(base)
    if not (base > 0.0 and math.isfinite(base)):
        raise ValueError(f"{op}: argument 'base' expected a finite base > 0, got {base}")
    frequencies = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if scaling is None:
        return frequencies
    if not isinstance(scaling, dict):
        raise TypeError(f"{op}: argument 'scaling' expected a dict or None, got {type(scaling).__name__}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_SCALING_TYPES:
        raise ValueError(f"{op}: argument 'scaling' has rope_type {kind!r}; supported: {', '.join(ROPE_SCALING_TYPES)}")
    if kind == "default":
        return frequencies

    def field(name: str) -> float:
        if name not in scaling:
            raise ValueError(f"{op}: argument 'scaling' of rope_type {kind!r} needs {name!r}")
        value = scaling[name]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{op}: argument 'scaling' expected {name!r} a finite number > 0, got {value!r}")
        return float(value)

    factor = field("factor")
    if kind == "linear":
        return frequencies / factor
    low, high = field("low_freq_factor"), field("high_freq_factor")
    context = field("original_max_position_embeddings")
    if not high > low:
        raise ValueError(f"{op}: argument 'scaling' expected high_freq_factor > low_freq_factor, got {high} <= {low}")
    wavelengths = 2 * math.pi / frequencies
    blend = (context / wavelengths - low) / (high - low)
    scaled = np.where(wavelengths > context / low, frequencies / factor, frequencies)
    between = ~(wavelengths < context / high) & ~(wavelengths > context / low)
    return np.where(between, (1 - blend) * frequencies / factor + blend * frequencies, scaled)
