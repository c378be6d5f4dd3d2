"""attnkit.Tensor: a native Array plus what autograd needs."""

from __future__ import annotations

import math
import numbers
import sys
import warnings

import numpy as np

from . import _C, _dtypes
from ._dtypes import as_dtype, bfloat16, float32
from .grad_mode import is_grad_enabled

# The dtypes the native cast kernel converts between (others go through numpy).
_NATIVE_CAST_DTYPES = frozenset({"float32", "int32", "int64", "bool"})

# DLPack device type codes (dlpack.h).
_DLPACK_CPU = 1
_DLPACK_CUDA = 2


class device:
    """Where a tensor lives: ``device("cpu")`` or ``device("cuda:0")``.
    Compares equal to its string form."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, index = spec.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        self.type = kind
        self.index = int(index) if index else (0 if kind == "cuda" else None)

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device('{self}')"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (TypeError, ValueError):
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


class Tensor:
    """An n-dimensional array on a device, with autograd.

    Memory is contiguous and row-major. Build one with ``attnkit.tensor``
    (copies), ``attnkit.from_numpy`` (zero-copy) or ``attnkit.from_dlpack``.

    This module holds what a tensor is (its memory, metadata, conversions and
    gradient bookkeeping). Its operators, its op methods (``t.sum()``,
    ``t.reshape()``, ...) and ``backward()`` are in ``_tensor_methods.py``,
    set on this class when attnkit is imported: the ops they call build
    tensors, so they sit above this module (``ops/``, ``autograd.py``), and
    the import graph has no circle.
    """

    # _post_accumulate_grad_hooks is set only on the leaves that get a hook.
    __slots__ = ("_array", "requires_grad", "grad", "_grad_fn", "_post_accumulate_grad_hooks", "__weakref__")
    __array_priority__ = 100  # numpy defers to our operators in mixed expressions

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "attnkit.Tensor is not built directly: use attnkit.tensor(data), "
            "attnkit.from_numpy(array) or attnkit.from_dlpack(obj)"
        )

    @classmethod
    def _wrap(cls, array, requires_grad: bool = False, grad_fn=None) -> Tensor:
        """grad_fn: None for a leaf, else (Node, output_index)."""
        t = object.__new__(cls)
        t._array = array
        t.requires_grad = requires_grad
        t.grad = None
        t._grad_fn = grad_fn
        return t

    # ------------------------------------------------------------ metadata --
    @property
    def shape(self) -> tuple:
        return self._array.shape

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return self._array.numel

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self) -> _dtypes.dtype:
        return _dtypes._dtype_by_name(self._array.dtype)

    @property
    def device(self) -> device:
        return device(self._array.device)

    @property
    def nbytes(self) -> int:
        return self._array.nbytes

    @property
    def grad_fn(self):
        return None if self._grad_fn is None else self._grad_fn[0]

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    def __repr__(self) -> str:
        extra = ""
        if self._grad_fn is not None:
            extra = f", grad_fn=<{self.grad_fn.name}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        if self.numel() == 0:
            # as PyTorch; numpy refuses empty shapes whose other sizes multiply past 2**63
            body = f"[], size={self.shape}"
        elif self.dtype == bfloat16:
            body = np.array2string(self.detach().to(float32).numpy(), separator=", ")
        else:
            body = np.array2string(self.detach().numpy(), separator=", ")
        return f"tensor({body}, dtype={self.dtype!r}{extra})"

    # ---------------------------------------------------- numpy and DLPack --
    def numpy(self) -> np.ndarray:
        """A numpy view of the same memory (no copy). CPU only; numpy has no
        bfloat16, so a bfloat16 tensor raises TypeError (``np.asarray`` widens it)."""
        if self.requires_grad:
            raise RuntimeError("numpy(): this tensor requires grad; call .detach().numpy()")
        if self.dtype == bfloat16:
            # Checked here: np.asarray would wrap the failing buffer in an object array.
            raise TypeError(
                "numpy(): numpy has no bfloat16; use np.asarray(t) (widens to float32) or t.float().numpy()"
            )
        return np.asarray(self._array)

    def __array__(self, dtype=None, copy=None):
        if self.dtype == bfloat16:
            if copy is False:
                raise ValueError("__array__: a bfloat16 tensor cannot be viewed by numpy without a copy")
            out = _bfloat16_values(self._array)  # numpy has no bfloat16: widen
            return out if dtype is None else out.astype(dtype, copy=False)
        view = np.asarray(self._array)
        if dtype is not None and np.dtype(dtype) != view.dtype:
            if copy is False:
                raise ValueError(f"__array__: cannot give {view.dtype} data as {np.dtype(dtype)} without a copy")
            return view.astype(dtype)
        return view.copy() if copy else view

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise BufferError(f"__dlpack__: cannot export a {self.device} tensor to device {dl_device}")
        array = self._array.copy() if copy else self._array
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        return array.to_dlpack(versioned)

    def __dlpack_device__(self):
        d = self.device
        return (_DLPACK_CPU, 0) if d.type == "cpu" else (_DLPACK_CUDA, d.index)

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item(): expected a tensor with one element, got shape {self.shape}")
        return np.asarray(self.detach()).reshape(()).item()

    def tolist(self):
        return np.asarray(self.detach()).tolist()

    # ------------------------------------------------------------ autograd --
    def detach(self) -> Tensor:
        """The same memory, cut out of the graph."""
        return Tensor._wrap(self._array)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not self.dtype.is_floating_point:
            raise TypeError(
                f"requires_grad_: only floating-point tensors can require gradients, this one is {self.dtype}"
            )
        if requires_grad and self.dtype != float32:
            # bfloat16 runs forward ops (inference); no op has a gradient in it.
            warnings.warn(
                f"requires_grad_: no attnkit op computes a gradient in {self.dtype} "
                f"(bfloat16 runs inference only), so nothing can compute one for this tensor; "
                f"train in float32 (.float()), with attnkit.autocast for bfloat16 products",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        if not requires_grad and self._grad_fn is not None:
            raise RuntimeError("requires_grad_(False): only leaf tensors can stop requiring grad; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def register_post_accumulate_grad_hook(self, hook) -> HookHandle:
        """Calls ``hook(self)`` in every backward pass that reaches this leaf,
        once its ``.grad`` holds everything the pass adds to it (as PyTorch's
        hook of that name). Hooks run in the order registered; the returned
        handle's ``remove()`` unregisters this one."""
        if not callable(hook):
            raise TypeError(
                f"register_post_accumulate_grad_hook: argument 'hook' expected a callable, got {type(hook).__name__}"
            )
        if not self.requires_grad or self._grad_fn is not None:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: only a leaf tensor that requires grad accumulates a gradient"
            )
        hooks = getattr(self, "_post_accumulate_grad_hooks", None)
        if hooks is None:
            hooks = self._post_accumulate_grad_hooks = []
        hooks.append(hook)
        return HookHandle(hooks, hook)

    def _accumulate_grad(self, grad_array) -> None:
        if self.grad is None:
            # Own the memory: the incoming array may be shared with the graph.
            self.grad = Tensor._wrap(grad_array.copy())
        else:
            _C.add_in_place(self.grad._array, grad_array)

    # --------------------------------------------------------- conversions --
    def to(self, target) -> Tensor:
        """A copy converted to a dtype (``attnkit.float32``, ...); only 'cpu' as a device."""
        if isinstance(target, (str, device)) and str(target).split(":")[0] in ("cpu", "cuda"):
            if device(target) == self.device:
                return self
            raise RuntimeError(f"to(): attnkit was built without a CUDA backend; cannot move to {target}")
        target = as_dtype(target, "to")
        if target == self.dtype:
            return self
        if target.name in _NATIVE_CAST_DTYPES and self.dtype.name in _NATIVE_CAST_DTYPES:
            return Tensor._wrap(_C.cast(self._array, target.name))
        if {target.name, self.dtype.name} == {"float32", "bfloat16"}:
            # exact both ways (nearest, ties to even; NaN kept): cpu/convert.h
            return Tensor._wrap(_C.cast(self._array, target.name))
        if not target.is_floating_point and self.dtype.is_floating_point:
            # float16/bfloat16 widen to float32 exactly, then the native cast
            # rounds as from float32 (toward zero, saturating, NaN to 0)
            return self.to(float32).to(target)
        values = _bfloat16_values(self._array) if self.dtype == bfloat16 else np.asarray(self._array)
        return tensor(values, dtype=target)

    def float(self) -> Tensor:
        return self.to(float32)

    def long(self) -> Tensor:
        return self.to(_dtypes.int64)

    def int(self) -> Tensor:
        return self.to(_dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(_dtypes.bool_)

    # ------------------------------------------------------------ in place --
    def _check_in_place(self, op: str) -> None:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                f"{op}: a tensor that requires grad cannot be changed in place while "
                f"gradients are recorded; use 'with attnkit.no_grad():'"
            )

    def zero_(self) -> Tensor:
        """Sets every element to 0, in place; returns self."""
        self._check_in_place("zero_")
        _C.fill_(self._array, 0)
        return self

    def fill_(self, value) -> Tensor:
        """Sets every element to ``value`` (a number), in place; returns self."""
        self._check_in_place("fill_")
        if not isinstance(value, numbers.Real):
            raise TypeError(f"fill_: argument 'value' expected a number, got {type(value).__name__}")
        _C.fill_(self._array, value)
        return self


class HookHandle:
    """What registering a hook returns: ``remove()`` unregisters it."""

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks: list, hook) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _caller_stacklevel() -> int:
    """The stacklevel of a warning raised here that names the first caller
    outside attnkit (the user's line, not a factory's)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "attnkit":
        frame, level = frame.f_back, level + 1
    return level


def _bfloat16_values(array) -> np.ndarray:
    """float32 copy of a bfloat16 native array (read through its bits)."""
    return _dtypes.bfloat16_bits_to_float32(np.asarray(array.view_as_dtype("float16")).view(np.uint16))


def _array_from_values(values: np.ndarray, dtype: _dtypes.dtype):
    """A fresh native array holding ``values`` converted to ``dtype``.
    (np.asarray, not np.ascontiguousarray, which turns a 0-d array into 1-d;
    array_from_numpy(copy=True) makes the copy contiguous.)"""
    if dtype == bfloat16:
        bits = _dtypes.to_bfloat16_bits(values)
        return _C.array_from_numpy(bits.view(np.float16), "bfloat16", True)
    with np.errstate(over="ignore"):  # a float beyond float16's range rounds to inf, as IEEE says
        return _C.array_from_numpy(np.asarray(values, dtype=dtype.numpy_dtype), "", True)


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, scalars, numpy
    arrays, tensors). Python floats and float64 arrays become float32, Python
    ints int64, as in PyTorch."""
    if isinstance(data, Tensor):
        values = np.asarray(data.detach())
        if dtype is None:
            dtype = data.dtype
    else:
        values = np.asarray(data)
    if dtype is None:
        kind = values.dtype.kind
        if kind == "f":
            dtype = _dtypes.from_numpy_dtype(values.dtype) or float32
        elif kind == "b":
            dtype = _dtypes.bool_
        elif kind in "iu":
            dtype = _dtypes.from_numpy_dtype(values.dtype) or _dtypes.int64
        else:
            raise TypeError(f"tensor: argument 'data' expected numbers or booleans, got {values.dtype} data")
    else:
        dtype = as_dtype(dtype)
        if values.dtype.kind not in "fiub":
            raise TypeError(f"tensor: argument 'data' expected numbers or booleans, got {values.dtype} data")
    if not dtype.is_floating_point and dtype != _dtypes.bool_:
        _check_integers_fit("tensor", values, dtype)
    out = Tensor._wrap(_array_from_values(values, dtype))
    if requires_grad:
        out.requires_grad_(True)
    return out


def _check_integers_fit(op: str, values: np.ndarray, dtype: _dtypes.dtype) -> None:
    """Values given for an integer dtype must be numbers it holds (after
    truncation toward zero): numpy's conversion would wrap 2**64 - 1 to -1,
    and turn NaN or 1e30 into -2**63, silently."""
    if values.size == 0 or values.dtype.kind == "b":
        return
    info = np.iinfo(dtype.numpy_dtype)
    bad = None
    if values.dtype.kind == "f":
        values = values.astype(np.float64)  # float16 cannot even hold the limits it is compared with
        with np.errstate(invalid="ignore"):
            whole = np.trunc(values)
            fits = np.isfinite(values) & (whole >= info.min) & (whole < -float(info.min))
        if not fits.all():
            bad = values[~fits].reshape(-1)[0].item()
    else:
        low, high = int(values.min()), int(values.max())  # Python ints: exact for uint64 too
        bad = low if low < info.min else high if high > info.max else None
    if bad is not None:
        raise ValueError(
            f"{op}: argument 'data' expected values that fit {dtype}, in [{info.min}, {info.max}]; "
            f"got {bad} in the {values.dtype} data"
        )


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (no copy). The array must be
    C-contiguous and of a dtype attnkit has (float32, float16, int32, int64, bool)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: argument 'array' expected a numpy.ndarray, got {type(array).__name__}")
    if _dtypes.from_numpy_dtype(array.dtype) is None:
        raise TypeError(
            f"from_numpy: argument 'array' expected dtype float32, float16, int32, int64 "
            f"or bool, got {array.dtype}; attnkit.tensor(array) copies and converts"
        )
    return Tensor._wrap(_C.array_from_numpy(array, "", False))


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any DLPack producer (numpy, PyTorch, ...)."""
    if hasattr(obj, "__dlpack_device__"):
        kind, index = obj.__dlpack_device__()
        if kind not in (_DLPACK_CPU, 3):  # 3: CUDA pinned host memory, readable by the CPU
            raise RuntimeError(
                f"from_dlpack: the producer's memory is on DLPack device type {kind} "
                f"(index {index}); this attnkit build has only the CPU backend"
            )
    if hasattr(obj, "__dlpack__"):
        try:
            try:
                capsule = obj.__dlpack__(max_version=(1, 0))
            except TypeError:  # a producer older than DLPack 1.0 takes no max_version
                capsule = obj.__dlpack__()
        except BufferError as error:  # numpy before 2.1 exports no read-only array
            raise ValueError(
                f"from_dlpack: the producer refused to share its memory ({error}); read-only memory "
                f"cannot be shared, attnkit.tensor(obj) copies it"
            ) from None
    else:
        capsule = obj  # a bare capsule, as older libraries hand out
    try:
        return Tensor._wrap(_C.array_from_dlpack_capsule(capsule))
    except TypeError as error:
        if "incompatible function arguments" in str(error):
            raise TypeError(
                f"from_dlpack: argument 'obj' expected an object with __dlpack__ "
                f"or a DLPack capsule, got {type(obj).__name__}"
            ) from None
        raise


# ----------------------------------------------------------------- factories --


# Sizes are int64 in the native layer: one beyond it cannot even be passed.
_SIZE_LIMIT = 2**63


def _size_argument(op: str, size) -> list:
    """A size given as ints or as one sequence of ints: (2, 3) or ((2, 3),)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise TypeError(f"{op}: argument 'size' expected ints, got {tuple(size)!r}")
    if not all(0 <= s < _SIZE_LIMIT for s in size):
        raise ValueError(f"{op}: argument 'size' expected sizes in [0, 2**63), got {tuple(size)}")
    return list(size)


def _finish(out: Tensor, requires_grad: bool) -> Tensor:
    return out.requires_grad_(True) if requires_grad else out


def empty(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` whose memory is not initialized (float32 by default)."""
    dtype = float32 if dtype is None else as_dtype(dtype)
    return _finish(Tensor._wrap(_C.empty(_size_argument("empty", size), dtype.name)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value``. The dtype defaults to
    the value's: bool, int64 for an int, float32 for a float (as in PyTorch)."""
    if isinstance(size, int):
        size = (size,)
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"full: argument 'size' expected a sequence of ints, got {type(size).__name__}")
    shape = _size_argument("full", tuple(size))
    if dtype is None:
        if isinstance(fill_value, (bool, np.bool_)):
            dtype = _dtypes.bool_
        elif isinstance(fill_value, (int, np.integer)):
            dtype = _dtypes.int64
        else:
            dtype = float32
    dtype = as_dtype(dtype)
    if dtype.name not in _NATIVE_CAST_DTYPES and fill_value != 0:
        # float16 and bfloat16 have no fill kernel: numpy rounds the value.
        return _finish(tensor(np.full(shape, fill_value, dtype=np.float64), dtype=dtype), requires_grad)
    array = _C.empty(shape, dtype.name)
    _C.fill_(array, fill_value.item() if isinstance(fill_value, np.generic) else fill_value)
    return _finish(Tensor._wrap(array), requires_grad)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with 0 (float32 by default)."""
    return full(
        _size_argument("zeros", size), 0, dtype=float32 if dtype is None else dtype, requires_grad=requires_grad
    )


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with 1 (float32 by default)."""
    return full(_size_argument("ones", size), 1, dtype=float32 if dtype is None else dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False) -> Tensor:
    """``[start, start + step, ...)`` up to ``end`` (exclusive); ``arange(n)``
    counts from 0. int64 when every argument is an int, else float32 (each
    value computed in double as start + i * step, then rounded)."""
    if end is None:
        start, end = 0, start
    for name, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"arange: argument '{name}' expected a number, got {type(value).__name__}")
    if step == 0:
        raise ValueError("arange: argument 'step' must not be 0")
    integral = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    if dtype is None:
        dtype = _dtypes.int64 if integral else float32
    dtype = as_dtype(dtype)
    if integral:
        # len(range(...)) in exact integers (len() itself stops at 2**63).
        start, end, step = int(start), int(end), int(step)
        count = max(0, (end - start + step - (1 if step > 0 else -1)) // step)
    else:
        if not all(np.isfinite(float(v)) for v in (start, end, step)):
            raise ValueError(f"arange: expected finite start, end and step, got {start}, {end}, {step}")
        steps = (float(end) - float(start)) / float(step)  # +-inf when the range is too long for a double
        count = 0 if not steps > 0 else math.ceil(steps) if steps < _SIZE_LIMIT else _SIZE_LIMIT
    if count >= _SIZE_LIMIT:
        raise ValueError(f"arange: the range has {count} values or more, beyond the 2**63 - 1 a tensor can hold")
    if dtype.name in ("int32", "int64"):
        if not integral:
            raise TypeError(f"arange: dtype {dtype} needs int start, end and step, got {start}, {end}, {step}")
        array = _C.arange(int(start), int(step), count, dtype.name)
    elif dtype == float32:
        array = _C.arange(float(start), float(step), count, "float32")
    else:
        raise TypeError(f"arange: argument 'dtype' expected float32, int32 or int64, got {dtype}")
    return _finish(Tensor._wrap(array), requires_grad)
