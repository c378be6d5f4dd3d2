"""Elementwise ops: arithmetic with numpy broadcasting, sums and means,
comparisons, where/masked_fill, max/argmax and dtype casts.

Arithmetic is float32; a Python number operand is rounded to float32 first,
as in PyTorch. The gradient of a broadcast operand is summed over the
dimensions it was broadcast along, by a pairwise native sum that gives the same
bits for any thread count.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from .. import _C
from .._dtypes import as_dtype, bool_, float32
from ..autograd import Function
from ..tensor import Tensor
from .checks import check_int64, check_tensor


def is_scalar(value) -> bool:
    """A Python (or numpy) real number: an operand that is broadcast from ()."""
    return isinstance(value, (int, float)) or isinstance(value, numbers.Real)


def _check_operand(op: str, argument: str, value) -> None:
    if not isinstance(value, Tensor) and not is_scalar(value):
        raise TypeError(
            f"{op}: argument '{argument}' expected an attnkit.Tensor or a number, got {type(value).__name__}"
        )


# ---------------------------------------------------------------- arithmetic --


class _AddSub(Function):
    """a + b or a - b: the gradients are the output's, summed to each shape."""

    @staticmethod
    def forward(ctx, a, b, op):
        ctx.op = op
        ctx.shapes = (a.shape, b.shape)
        return _C.binary(a._array, b._array, op)

    @staticmethod
    def backward(ctx, grad):
        a_shape, b_shape = ctx.shapes
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = _C.sum_to_shape(grad, list(a_shape))
        if ctx.needs_input_grad[1]:
            grad_b = _C.sum_to_shape(grad, list(b_shape))
            if ctx.op == "sub":
                grad_b = _C.negative(grad_b)
        return grad_a, grad_b, None


class _MulDiv(Function):
    @staticmethod
    def forward(ctx, a, b, op):
        ctx.op = op
        ctx.save_for_backward(a._array, b._array)
        return _C.binary(a._array, b._array, op)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        grad_a, grad_b = _C.binary_backward(grad, a, b, ctx.op, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_a, grad_b, None


class _Scalar(Function):
    """a op s, or s op a with scalar_first; s a Python number."""

    @staticmethod
    def forward(ctx, a, scalar, scalar_first, op):
        ctx.op, ctx.scalar, ctx.scalar_first = op, scalar, scalar_first
        if op == "div" and scalar_first:
            ctx.save_for_backward(a._array)  # d(s/a)/da = -s/a^2 needs a
        return _C.binary_scalar(a._array, scalar, scalar_first, op)

    @staticmethod
    def backward(ctx, grad):
        op, scalar = ctx.op, ctx.scalar
        if op == "add" or (op == "sub" and not ctx.scalar_first):
            grad_a = grad
        elif op == "sub":
            grad_a = _C.negative(grad)
        elif op == "mul" or not ctx.scalar_first:
            grad_a = _C.binary_scalar(grad, scalar, False, op)  # g * s or g / s
        else:
            grad_a = _C.scalar_divide_backward(grad, ctx.saved[0], scalar)
        return grad_a, None, None, None


class _Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return _C.negative(a._array)

    @staticmethod
    def backward(ctx, grad):
        return _C.negative(grad)


def arithmetic(op: str, a, b) -> Tensor:
    """a op b for op in "add", "sub", "mul", "div"; tensors and numbers, at
    least one a tensor (the Tensor operators come here)."""
    _check_operand(op, "input", a)
    _check_operand(op, "other", b)
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            return (_AddSub if op in ("add", "sub") else _MulDiv).apply(a, b, op)
        return _Scalar.apply(a, float(b), False, op)
    if isinstance(b, Tensor):
        return _Scalar.apply(b, float(a), True, op)
    raise TypeError(f"{op}: expected at least one attnkit.Tensor, got {type(a).__name__} and {type(b).__name__}")


def add(input, other) -> Tensor:
    """``input + other`` with numpy broadcasting; either may be a Python
    number. float32. Differentiable."""
    return arithmetic("add", input, other)


def sub(input, other) -> Tensor:
    """``input - other`` with numpy broadcasting; either may be a Python
    number. float32. Differentiable."""
    return arithmetic("sub", input, other)


def mul(input, other) -> Tensor:
    """``input * other`` with numpy broadcasting; either may be a Python
    number. float32. Differentiable."""
    return arithmetic("mul", input, other)


def div(input, other) -> Tensor:
    """``input / other`` (true division, IEEE: x/0 is +-inf or NaN) with numpy
    broadcasting; either may be a Python number. float32. Differentiable."""
    return arithmetic("div", input, other)


def neg(input: Tensor) -> Tensor:
    """``-input``: the sign flipped (zeros and NaN included). float32. Differentiable."""
    check_tensor("neg", "input", input)
    return _Neg.apply(input)


# ---------------------------------------------------------------- reductions --


def _reduction_dims(op: str, input: Tensor, dim) -> list:
    if dim is None:
        return list(range(input.ndim))
    if isinstance(dim, int):
        dims = [dim]
    elif isinstance(dim, (tuple, list)) and all(isinstance(d, int) for d in dim):
        dims = list(dim)
    else:
        raise TypeError(f"{op}: argument 'dim' expected None, an int or a tuple of ints, got {dim!r}")
    check_int64(op, "dim", dims)
    return dims


def _kept_shape(shape, dims) -> list:
    """shape with the reduced dims set to 1 (the keepdim output shape).
    Called after the native op has checked dims."""
    ndim = len(shape)
    reduced = {d % ndim for d in dims} if ndim else set()
    return [1 if d in reduced else size for d, size in enumerate(shape)]


def _reduced_count(shape, dims) -> int:
    """How many elements each output of the reduction sums."""
    ndim = len(shape)
    return math.prod(shape[d] for d in {d % ndim for d in dims}) if ndim else 1


class _SumOrMean(Function):
    """sum (``mean`` False) or mean over ``dims``: backward spreads the
    gradient of each output over the elements it reduced, divided by their
    count for the mean."""

    @staticmethod
    def forward(ctx, input, dims, keepdim, mean):
        out = (_C.mean if mean else _C.sum)(input._array, dims, keepdim)
        ctx.input_shape = list(input.shape)
        ctx.kept_shape = _kept_shape(input.shape, dims)
        ctx.count = _reduced_count(input.shape, dims) if mean else None
        return out

    @staticmethod
    def backward(ctx, grad):
        if ctx.count is not None:
            grad = _C.binary_scalar(grad, float(ctx.count), False, "div")
        return _C.expand(grad.reshape(ctx.kept_shape), ctx.input_shape), None, None, None


def sum(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """The sum over ``dim`` (None: every dimension; an int or a tuple of
    ints, negative ones counted from the end), dropping the summed dimensions
    unless ``keepdim``. float32 sums pairwise, the same bits for any thread
    count; bool, int32 and int64 give an exact int64 sum. Differentiable."""
    check_tensor("sum", "input", input)
    return _SumOrMean.apply(input, _reduction_dims("sum", input, dim), bool(keepdim), False)


def mean(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """The mean over ``dim`` (as in ``sum``); float32. The mean over no
    elements is NaN. Differentiable."""
    check_tensor("mean", "input", input)
    return _SumOrMean.apply(input, _reduction_dims("mean", input, dim), bool(keepdim), True)


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor


def _last_dim_first(input: Tensor, dim: int):
    """input with ``dim`` moved to the end (a copy unless it is already last)."""
    ndim = input.ndim
    if not -ndim <= dim < ndim:
        raise ValueError(f"max: argument 'dim' expected a dim in [{-ndim}, {ndim}), got {dim}")
    dim %= ndim
    if dim == ndim - 1:
        return input._array, dim
    order = [d for d in range(ndim) if d != dim] + [dim]
    return _C.permute(input._array, order), dim


def max(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """With ``dim=None``: the largest element, 0-d. With a dim: ``(values,
    indices)``, the largest value along ``dim`` and the first index where it
    occurs (int64). NaN counts as the largest value. float32. Not
    differentiable (the results do not require grad)."""
    check_tensor("max", "input", input)
    if dim is None:
        values, _ = _C.max_last_dim(input._array.reshape([-1]))
        return Tensor._wrap(values)
    if not isinstance(dim, int):
        raise TypeError(f"max: argument 'dim' expected an int or None, got {dim!r}")
    if input.ndim == 0:
        raise ValueError("max: argument 'input' expected at least one dimension when 'dim' is given, got a 0-d tensor")
    array, dim = _last_dim_first(input, dim)
    values, indices = _C.max_last_dim(array)
    if keepdim:
        shape = list(input.shape)
        shape[dim] = 1
        values, indices = values.reshape(shape), indices.reshape(shape)
    return MaxResult(Tensor._wrap(values), Tensor._wrap(indices))


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The index (int64) of the first largest element: of the flattened
    tensor with ``dim=None``, else along ``dim``. NaN counts as the largest."""
    check_tensor("argmax", "input", input)
    if dim is None:
        _, indices = _C.max_last_dim(input._array.reshape([-1]))
        return Tensor._wrap(indices)
    return max(input, dim, keepdim).indices


# ------------------------------------------------------ comparisons, where --


def _scalar_array(value, dtype):
    """A 0-d native array of ``dtype`` holding ``value``."""
    array = _C.empty([], dtype.name)
    _C.fill_(array, value)
    return array


def compare(op: str, input, other) -> Tensor:
    """input op other as a bool tensor, for op in "eq", "ne", "lt", "le",
    "gt", "ge" (the Tensor comparison operators come here)."""
    check_tensor(op, "input", input)
    if isinstance(other, Tensor):
        return Tensor._wrap(_C.compare(input._array, other._array, op))
    if not is_scalar(other):
        raise TypeError(f"{op}: argument 'other' expected an attnkit.Tensor or a number, got {type(other).__name__}")
    array = input._array
    # A number compares as the tensor's dtype would hold it; a fractional one
    # with an integer tensor, or a non-boolean one with a bool tensor, by
    # value: the tensor is widened first.
    if input.dtype != float32 and not isinstance(other, bool) and not float(other).is_integer():
        array = _C.cast(array, "float32")
    elif input.dtype == bool_ and not isinstance(other, bool) and other not in (0, 1):
        array = _C.cast(array, "int64")
    value = bool(other) if array.dtype == "bool" else other if array.dtype == "float32" else int(other)
    return Tensor._wrap(_C.compare(array, _scalar_array(value, as_dtype(array.dtype)), op))


def eq(input, other) -> Tensor:
    """``input == other`` as a bool tensor, with broadcasting; NaN is unequal
    to everything. Tensors of one dtype, or a tensor and a number."""
    return compare("eq", input, other)


def ne(input, other) -> Tensor:
    """``input != other`` as a bool tensor, with broadcasting."""
    return compare("ne", input, other)


def lt(input, other) -> Tensor:
    """``input < other`` as a bool tensor, with broadcasting."""
    return compare("lt", input, other)


def le(input, other) -> Tensor:
    """``input <= other`` as a bool tensor, with broadcasting."""
    return compare("le", input, other)


def gt(input, other) -> Tensor:
    """``input > other`` as a bool tensor, with broadcasting."""
    return compare("gt", input, other)


def ge(input, other) -> Tensor:
    """``input >= other`` as a bool tensor, with broadcasting."""
    return compare("ge", input, other)


def logical_not(input: Tensor) -> Tensor:
    """``~input`` for a bool tensor."""
    check_tensor("logical_not", "input", input)
    if input.dtype != bool_:
        raise TypeError(f"logical_not: argument 'input' expected bool, got {input.dtype}")
    return Tensor._wrap(_C.compare(input._array, _scalar_array(False, bool_), "eq"))


class _Where(Function):
    @staticmethod
    def forward(ctx, condition, input, other):
        ctx.shapes = (list(input.shape), list(other.shape))
        ctx.save_for_backward(condition._array)
        return _C.where(condition._array, input._array, other._array)

    @staticmethod
    def backward(ctx, grad):
        (condition,) = ctx.saved
        input_shape, other_shape = ctx.shapes
        grad_input, grad_other = _C.where_backward(
            grad, condition, input_shape, other_shape, ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        )
        return None, grad_input, grad_other


def where(condition: Tensor, input, other) -> Tensor:
    """``input`` where ``condition`` (bool) holds, else ``other``; the three
    broadcast together. ``input`` or ``other`` may be a Python number (it takes
    the other operand's dtype). Differentiable in ``input`` and ``other``."""
    check_tensor("where", "condition", condition)
    _check_operand("where", "input", input)
    _check_operand("where", "other", other)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("where: arguments 'input' and 'other' are both numbers; one must be an attnkit.Tensor")
    if not isinstance(input, Tensor):
        input = Tensor._wrap(_scalar_array(input, other.dtype))
    if not isinstance(other, Tensor):
        other = Tensor._wrap(_scalar_array(other, input.dtype))
    return _Where.apply(condition, input, other)


class _MaskedFill(Function):
    @staticmethod
    def forward(ctx, input, mask, value):
        ctx.save_for_backward(mask._array)
        return _C.masked_fill(input._array, mask._array, value)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved
        return _C.masked_fill(grad, mask, 0.0), None, None


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """``input`` with ``value`` (a number) wherever ``mask`` (bool, broadcast
    to input's shape) is True. Differentiable in ``input`` (its gradient is 0
    where the mask is True)."""
    check_tensor("masked_fill", "input", input)
    check_tensor("masked_fill", "mask", mask)
    if not is_scalar(value):
        raise TypeError(f"masked_fill: argument 'value' expected a number, got {type(value).__name__}")
    return _MaskedFill.apply(input, mask, float(value))


# --------------------------------------------------------------------- casts --

_NATIVE_CASTS = {"float32", "int32", "int64", "bool"}


def cast(input: Tensor, dtype) -> Tensor:
    """A copy of ``input`` as ``dtype`` (float32, int32, int64 or bool): floats
    to integers truncate toward zero and saturate, NaN becomes 0; anything
    nonzero becomes True. Not differentiable."""
    check_tensor("cast", "input", input)
    dtype = as_dtype(dtype, "dtype")
    if dtype.name not in _NATIVE_CASTS or input.dtype.name not in _NATIVE_CASTS:
        raise TypeError(
            f"cast: expected float32, int32, int64 or bool on both sides, "
            f"got {input.dtype} to {dtype}; use Tensor.to() for float16 and bfloat16"
        )
    return Tensor._wrap(_C.cast(input._array, dtype.name))


__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "sum",
    "mean",
    "max",
    "argmax",
    "MaxResult",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_not",
    "where",
    "masked_fill",
    "cast",
]
