"""Data movement: reshape (a zero-copy view), transpose and permute (copies
into a new contiguous tensor), expand, split/chunk and cat, narrow, and indexed
copies (index_select, gather) whose gradients are deterministic scatter-adds.

Arrays are contiguous and row-major, so a result shares its input's memory
only where that memory already has the result's layout: reshape, and pieces
taken along a dimension that only size-1 dimensions precede (split, narrow).
Every op works for any dtype; gradients flow to float32 inputs.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..autograd import Function
from ..tensor import Tensor
from .checks import check_int64, check_tensor, check_tensor_sequence


def _normalize_dim(op: str, dim, ndim: int) -> int:
    if not isinstance(dim, int):
        raise TypeError(f"{op}: argument 'dim' expected an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: argument 'dim' expected a dim in [{-ndim}, {ndim}), got {dim}")
    return dim % ndim


def _shape_argument(op: str, shape) -> list:
    """A shape given as ints or as one sequence of ints: (2, 3) or ((2, 3),)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    if not all(isinstance(size, int) for size in shape):
        raise TypeError(f"{op}: argument 'shape' expected ints, got {tuple(shape)!r}")
    if not all(-(2**63) <= size < 2**63 for size in shape):  # the native layer's int64
        raise ValueError(f"{op}: argument 'shape' expected sizes below 2**63, got {tuple(shape)}")
    return list(shape)


# ------------------------------------------------------------------ reshape --


class _Reshape(Function):
    @staticmethod
    def forward(ctx, input, shape):
        ctx.input_shape = list(input.shape)
        return input._array.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape), None


def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in another shape, sharing memory (no copy): the
    element count must match; one size may be -1 and is inferred.
    Differentiable."""
    check_tensor("reshape", "input", input)
    return _Reshape.apply(input, _shape_argument("reshape", shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Dims ``start_dim..end_dim`` merged into one, sharing memory."""
    check_tensor("flatten", "input", input)
    if input.ndim == 0:
        # As in PyTorch, a 0-d tensor takes the dims of a 1-d one (0 or -1).
        _normalize_dim("flatten", start_dim, 1)
        _normalize_dim("flatten", end_dim, 1)
        return reshape(input, [1])
    start = _normalize_dim("flatten", start_dim, input.ndim)
    end = _normalize_dim("flatten", end_dim, input.ndim)
    if start > end:
        raise ValueError(f"flatten: argument 'start_dim' ({start_dim}) must not come after 'end_dim' ({end_dim})")
    shape = list(input.shape)
    return reshape(input, shape[:start] + [math.prod(shape[start : end + 1])] + shape[end + 1 :])


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """A size-1 dimension inserted at ``dim`` (in [-ndim-1, ndim]), sharing memory."""
    check_tensor("unsqueeze", "input", input)
    position = _normalize_dim("unsqueeze", dim, input.ndim + 1)
    shape = list(input.shape)
    shape.insert(position, 1)
    return reshape(input, shape)


def squeeze(input: Tensor, dim: int | None = None) -> Tensor:
    """Size-1 dimensions removed (all of them, or ``dim`` if it has size 1),
    sharing memory."""
    check_tensor("squeeze", "input", input)
    shape = list(input.shape)
    if dim is None:
        return reshape(input, [size for size in shape if size != 1])
    if input.ndim == 0:
        _normalize_dim("squeeze", dim, 1)  # as flatten: 0 or -1
        return reshape(input, [])
    position = _normalize_dim("squeeze", dim, input.ndim)
    if shape[position] == 1:
        del shape[position]
    return reshape(input, shape)


# ---------------------------------------------------------- permute, expand --


class _Permute(Function):
    @staticmethod
    def forward(ctx, input, dims):
        out = _C.permute(input._array, dims)
        inverse = [0] * len(dims)
        for position, dim in enumerate(dims):
            inverse[dim % len(dims)] = position
        ctx.inverse = inverse
        return out

    @staticmethod
    def backward(ctx, grad):
        return _C.permute(grad, ctx.inverse), None


def permute(input: Tensor, *dims) -> Tensor:
    """The dimensions reordered: ``out.shape[i] = input.shape[dims[i]]``,
    copied into a new contiguous tensor. Differentiable."""
    check_tensor("permute", "input", input)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    if not all(isinstance(d, int) for d in dims):
        raise TypeError(f"permute: argument 'dims' expected ints, got {tuple(dims)!r}")
    check_int64("permute", "dims", list(dims))
    return _Permute.apply(input, list(dims))


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """``dim0`` and ``dim1`` swapped, copied into a new contiguous tensor
    (2-d and batched 2-d transposes go through cache-sized tiles).
    Differentiable."""
    check_tensor("transpose", "input", input)
    a = _normalize_dim("transpose", dim0, input.ndim)
    b = _normalize_dim("transpose", dim1, input.ndim)
    dims = list(range(input.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return _Permute.apply(input, dims)


class _Expand(Function):
    @staticmethod
    def forward(ctx, input, shape):
        ctx.input_shape = list(input.shape)
        return _C.expand(input._array, shape)

    @staticmethod
    def backward(ctx, grad):
        return _C.sum_to_shape(grad, ctx.input_shape), None


def expand(input: Tensor, *shape) -> Tensor:
    """``input`` broadcast to ``shape`` (numpy rules; -1 keeps a size),
    copied. Differentiable: the gradient is summed over the broadcast dims."""
    check_tensor("expand", "input", input)
    shape = _shape_argument("expand", shape)
    lead = len(shape) - input.ndim
    if lead < 0:
        raise ValueError(f"expand: argument 'shape' expected at least {input.ndim} dims, got {tuple(shape)}")
    shape = [input.shape[i - lead] if size == -1 and i >= lead else size for i, size in enumerate(shape)]
    return _Expand.apply(input, shape)


# -------------------------------------------------------- split, cat, narrow --


class _Split(Function):
    @staticmethod
    def forward(ctx, input, sizes, dim):
        ctx.dim = dim
        return tuple(_C.split(input._array, sizes, dim))

    @staticmethod
    def backward(ctx, *grads):
        return _C.cat(list(grads), ctx.dim), None, None


def split(input: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces along ``dim``: of ``split_size_or_sections`` each (an int; the
    last may be smaller), or of the sizes listed. Views of ``input`` when only
    size-1 dimensions precede ``dim``, copies otherwise. Differentiable."""
    check_tensor("split", "input", input)
    dim = _normalize_dim("split", dim, input.ndim)
    size = input.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and size > 0 or step < 0:
            raise ValueError(f"split: argument 'split_size_or_sections' expected a positive size, got {step}")
        sizes = [min(step, size - start) for start in range(0, size, step)] if size else [0]
    elif isinstance(split_size_or_sections, (tuple, list)) and all(isinstance(s, int) for s in split_size_or_sections):
        sizes = list(split_size_or_sections)
        check_int64("split", "split_size_or_sections", sizes)
    else:
        raise TypeError(
            f"split: argument 'split_size_or_sections' expected an int or a list of ints, "
            f"got {split_size_or_sections!r}"
        )
    return _Split.apply(input, sizes, dim)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """``chunks`` pieces of equal size along ``dim`` (the last may be smaller,
    and there may be fewer pieces, as in PyTorch). Differentiable."""
    check_tensor("chunk", "input", input)
    if not isinstance(chunks, int) or chunks <= 0:
        raise ValueError(f"chunk: argument 'chunks' expected a positive int, got {chunks!r}")
    size = input.shape[_normalize_dim("chunk", dim, input.ndim)]
    return split(input, max(1, -(-size // chunks)), dim)


class _Cat(Function):
    @staticmethod
    def forward(ctx, dim, *tensors):
        out = _C.cat([t._array for t in tensors], dim)  # checks the shapes first
        ctx.dim = dim
        ctx.sizes = [t.shape[dim] for t in tensors]
        return out

    @staticmethod
    def backward(ctx, grad):
        return (None, *_C.split(grad, ctx.sizes, ctx.dim))


def cat(tensors, dim: int = 0) -> Tensor:
    """The tensors joined along ``dim``: one dtype, equal sizes elsewhere.
    Differentiable."""
    check_tensor_sequence("cat", tensors)
    dim = _normalize_dim("cat", dim, tensors[0].ndim)
    return _Cat.apply(dim, *tensors)


def stack(tensors, dim: int = 0) -> Tensor:
    """The tensors (one shape, one dtype) joined along a new dimension ``dim``.
    Differentiable."""
    check_tensor_sequence("stack", tensors)
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: argument 'tensors[{i}]' expected the shape of tensors[0], {tensors[0].shape}, got {t.shape}"
            )
    dim = _normalize_dim("stack", dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


class _Narrow(Function):
    @staticmethod
    def forward(ctx, input, dim, start, length):
        ctx.input_shape, ctx.dim, ctx.start = list(input.shape), dim, start
        return _C.narrow(input._array, dim, start, length)

    @staticmethod
    def backward(ctx, grad):
        return _C.narrow_backward(grad, ctx.input_shape, ctx.dim, ctx.start), None, None, None


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """``input[..., start:start + length, ...]`` along ``dim`` (a negative
    start counts from the end): a view when only size-1 dimensions precede
    ``dim``, a copy otherwise. Differentiable."""
    check_tensor("narrow", "input", input)
    dim = _normalize_dim("narrow", dim, input.ndim)
    if not isinstance(start, int) or not isinstance(length, int):
        raise TypeError(f"narrow: arguments 'start' and 'length' expected ints, got {start!r} and {length!r}")
    if start < 0:
        start += input.shape[dim]
    check_int64("narrow", "start", start)
    check_int64("narrow", "length", length)
    return _Narrow.apply(input, dim, start, length)


class _Clone(Function):
    @staticmethod
    def forward(ctx, input):
        return input._array.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


def clone(input: Tensor) -> Tensor:
    """A copy in new memory. Differentiable."""
    check_tensor("clone", "input", input)
    return _Clone.apply(input)


# ------------------------------------------------------------ indexed copies --


def _check_index(op: str, index) -> None:
    check_tensor(op, "index", index)
    if index.dtype.name not in ("int32", "int64"):
        raise TypeError(f"{op}: argument 'index' expected an int32 or int64 tensor, got {index.dtype}")


class _IndexedCopy(Function):
    """A copy of the entries ``index`` names along ``dim`` (``forward_kernel``);
    backward scatter-adds the gradient back (``backward_kernel``)."""

    forward_kernel = backward_kernel = None

    @classmethod
    def forward(cls, ctx, input, dim, index):
        ctx.input_shape, ctx.dim = list(input.shape), dim
        ctx.save_for_backward(index._array)
        return cls.forward_kernel(input._array, dim, index._array)

    @classmethod
    def backward(cls, ctx, grad):
        (index,) = ctx.saved
        return cls.backward_kernel(grad, ctx.input_shape, ctx.dim, index), None, None


class _IndexSelect(_IndexedCopy):
    forward_kernel, backward_kernel = staticmethod(_C.index_select), staticmethod(_C.index_select_backward)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices of ``input`` along ``dim`` that ``index`` names (int32 or
    int64, 0-d or 1-d, each in [0, size); ValueError naming the first bad
    one). Differentiable: slices named several times sum their gradients, in
    index order (the same bits for any thread count)."""
    check_tensor("index_select", "input", input)
    _check_index("index_select", index)
    return _IndexSelect.apply(input, _normalize_dim("index_select", dim, input.ndim), index)


class _Gather(_IndexedCopy):
    forward_kernel, backward_kernel = staticmethod(_C.gather), staticmethod(_C.gather_backward)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[i][j][k] = input[i][index[i][j][k]][k]`` for ``dim=1``, and
    likewise for any dim: ``index`` (int32 or int64) has input's number of
    dims, sizes at most input's outside ``dim``, entries in [0, size).
    Differentiable (deterministic scatter-add)."""
    check_tensor("gather", "input", input)
    _check_index("gather", index)
    return _Gather.apply(input, _normalize_dim("gather", dim, input.ndim), index)


def getitem(input: Tensor, key) -> Tensor:
    """``input[key]`` (Tensor.__getitem__). ``key`` is an int tensor (or a list
    of ints) of ids into the leading dimension, as in ``weight[ids]``, giving
    ``ids.shape + input.shape[1:]``; or ints, step-1 slices and one ``...``
    for the leading dimensions, as in ``x[0]``, ``x[:, -1]``, ``x[2:5]``.
    Leading-dimension parts are views; other parts copy. Differentiable."""
    if isinstance(key, list) and all(isinstance(k, int) and not isinstance(k, bool) for k in key):
        check_int64("__getitem__", "key", key)
        key = Tensor._wrap(_C.array_from_numpy(_int64_ids(key), "", True))
    if isinstance(key, Tensor):
        if key.dtype.name not in ("int32", "int64"):
            raise TypeError(
                f"__getitem__: a tensor index must hold int32 or int64 ids, got {key.dtype}; "
                f"for a bool mask use masked_fill or where"
            )
        if input.ndim == 0:
            raise IndexError("__getitem__: a 0-d tensor cannot be indexed by ids")
        ids = Tensor._wrap(key._array.reshape([-1]))
        selected = index_select(input, 0, ids)
        return reshape(selected, list(key.shape) + list(input.shape[1:]))
    entries = list(key) if isinstance(key, tuple) else [key]
    ellipses = [i for i, entry in enumerate(entries) if entry is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("__getitem__: an index can hold only one ellipsis ('...')")
    if ellipses:
        i = ellipses[0]
        entries[i : i + 1] = [slice(None)] * (input.ndim - len(entries) + 1)
    if len(entries) > input.ndim:
        raise IndexError(f"__getitem__: too many indices ({len(entries)}) for a tensor of {input.ndim} dimensions")
    out = input
    removed = []
    for dim, entry in enumerate(entries):
        size = input.shape[dim]
        if isinstance(entry, slice):
            start, stop, step = entry.indices(size)
            if step != 1:
                raise ValueError(
                    f"__getitem__: only step-1 slices are supported (tensors are contiguous), "
                    f"got step {step} for dimension {dim}"
                )
            length = max(0, stop - start)
            if length != size:
                out = narrow(out, dim, start, length)
        elif isinstance(entry, int) and not isinstance(entry, bool) or _is_numpy_integer(entry):
            position = int(entry)
            if not -size <= position < size:
                raise IndexError(f"__getitem__: index {position} is out of range for dimension {dim} of size {size}")
            out = narrow(out, dim, position % size, 1)
            removed.append(dim)
        else:
            raise TypeError(
                f"__getitem__: expected ints, step-1 slices, '...' or one int tensor of ids, "
                f"got {type(entry).__name__} for dimension {dim}"
            )
    if removed:
        out = reshape(out, [size for dim, size in enumerate(out.shape) if dim not in removed])
    return out


def _is_numpy_integer(value) -> bool:
    return isinstance(value, np.integer)


def _int64_ids(values: list) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(len(values))


__all__ = [
    "reshape",
    "flatten",
    "unsqueeze",
    "squeeze",
    "permute",
    "transpose",
    "expand",
    "split",
    "chunk",
    "cat",
    "stack",
    "narrow",
    "clone",
    "index_select",
    "gather",
    "getitem",
]
