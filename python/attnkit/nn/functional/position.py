"""Positional encodings: the sinusoidal table and rotary position embedding."""

from __future__ import annotations

import math
import numbers

from ... import _C
from ...autograd import Function
from ...tensor import Tensor
from ._common import check_tensor


def _check_int(op: str, argument: str, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: argument '{argument}' expected an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{op}: argument '{argument}' expected a 64-bit integer, got {value}")
    return int(value)


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
    length = _check_int(op, "length", length)
    dim = _check_int(op, "dim", dim)
    offset = _check_int(op, "offset", offset)
    return Tensor._wrap(_C.sinusoidal_position_encoding(length, dim, offset))


class _Rope(Function):
    @staticmethod
    def forward(ctx, x, offset, base, interleaved):
        ctx.rotation = (offset, base, interleaved)
        return _C.rope_forward(x._array, offset, base, interleaved)

    @staticmethod
    def backward(ctx, grad):
        offset, base, interleaved = ctx.rotation
        return _C.rope_backward(grad, offset, base, interleaved), None, None, None


def rope(x: Tensor, offset: int = 0, base: float = 10000.0, interleaved: bool = True) -> Tensor:
    """Rotary position embedding (RoPE; Su et al., "RoFormer", 2021) of
    ``x`` float32 [batch, seq, heads, head_dim], head_dim even. Differentiable.

    Row t sits at position p = offset + t (with a KV cache, ``offset`` is the
    number of cached positions). Pair i of each head vector, i < head_dim / 2,
    is rotated by theta_i = p * base^(-2i / head_dim):

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
    pair): decoding one position at a time with ``offset`` gives bit for bit
    the rows of the full sequence. The backward pass rotates the gradient by
    -theta_i (the inverse of a rotation is its transpose).
    """
    op = "rope"
    check_tensor(op, "x", x)
    offset = _check_int(op, "offset", offset)
    if not isinstance(base, numbers.Real) or isinstance(base, bool):
        raise TypeError(f"rope: argument 'base' expected a float, got {type(base).__name__}")
    base = float(base)
    if not (base > 0.0 and math.isfinite(base)):
        raise ValueError(f"rope: argument 'base' expected a finite base > 0, got {base}")
    if not isinstance(interleaved, bool):
        raise TypeError(f"rope: argument 'interleaved' expected a bool, got {type(interleaved).__name__}")
    return _Rope.apply(x, offset, base, interleaved)
