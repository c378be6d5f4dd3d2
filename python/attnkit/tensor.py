"""attnkit.Tensor: a native Array plus what autograd needs."""

from __future__ import annotations

import numpy as np

from . import _C
from . import _dtypes
from ._dtypes import as_dtype, bfloat16, float32
from .autograd import Node, run_backward

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
    """

    __slots__ = ("_array", "requires_grad", "grad", "_grad_fn", "__weakref__")
    __array_priority__ = 100  # numpy defers to our operators in mixed expressions

    def __init__(self, *args, **kwargs):
        raise TypeError("attnkit.Tensor is not built directly: use attnkit.tensor(data), "
                        "attnkit.from_numpy(array) or attnkit.from_dlpack(obj)")

    @classmethod
    def _wrap(cls, array, requires_grad: bool = False, grad_fn=None) -> "Tensor":
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
    def grad_fn(self) -> Node | None:
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
        if self.dtype == bfloat16:
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
            raise TypeError("numpy(): numpy has no bfloat16; use np.asarray(t) (widens to float32) "
                            "or t.float().numpy()")
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
    def detach(self) -> "Tensor":
        """The same memory, cut out of the graph."""
        return Tensor._wrap(self._array)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not self.dtype.is_floating_point:
            raise TypeError(f"requires_grad_: only floating-point tensors can require gradients, "
                            f"this one is {self.dtype}")
        if not requires_grad and self._grad_fn is not None:
            raise RuntimeError("requires_grad_(False): only leaf tensors can stop requiring grad; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulates d(self)/d(leaf) * gradient into every leaf's ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(f"backward(): a gradient must be given for a non-scalar "
                                   f"output of shape {self.shape}")
            grad = _C.empty(list(self.shape), self._array.dtype)
            np.asarray(grad)[...] = 1
        else:
            if not isinstance(gradient, Tensor):
                gradient = tensor(gradient, dtype=self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward(): argument 'gradient' expected shape {self.shape}, "
                                 f"got {gradient.shape}")
            if gradient.dtype != self.dtype:
                raise TypeError(f"backward(): argument 'gradient' expected dtype {self.dtype}, "
                                f"got {gradient.dtype}")
            grad = gradient._array
        run_backward(self, grad, retain_graph=retain_graph)

    def _accumulate_grad(self, grad_array) -> None:
        if self.grad is None:
            # Own the memory: the incoming array may be shared with the graph.
            self.grad = Tensor._wrap(grad_array.copy())
        else:
            np.add(np.asarray(self.grad._array), np.asarray(grad_array),
                   out=np.asarray(self.grad._array))

    # --------------------------------------------------------- conversions --
    def to(self, target) -> "Tensor":
        """A copy converted to a dtype (``attnkit.float32``, ...); only 'cpu' as a device."""
        if isinstance(target, (str, device)) and str(target).split(":")[0] in ("cpu", "cuda"):
            if device(target) == self.device:
                return self
            raise RuntimeError(f"to(): attnkit was built without a CUDA backend; cannot move to {target}")
        target = as_dtype(target, "to")
        if target == self.dtype:
            return self
        values = _bfloat16_values(self._array) if self.dtype == bfloat16 else np.asarray(self._array)
        return tensor(values, dtype=target)

    def float(self) -> "Tensor":
        return self.to(float32)


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
    out = Tensor._wrap(_array_from_values(values, dtype))
    if requires_grad:
        out.requires_grad_(True)
    return out


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (no copy). The array must be
    C-contiguous and of a dtype attnkit has (float32, float16, int32, int64, bool)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: argument 'array' expected a numpy.ndarray, got {type(array).__name__}")
    if _dtypes.from_numpy_dtype(array.dtype) is None:
        raise TypeError(f"from_numpy: argument 'array' expected dtype float32, float16, int32, int64 "
                        f"or bool, got {array.dtype}; attnkit.tensor(array) copies and converts")
    return Tensor._wrap(_C.array_from_numpy(array, "", False))


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of any DLPack producer (numpy, PyTorch, ...)."""
    if hasattr(obj, "__dlpack_device__"):
        kind, index = obj.__dlpack_device__()
        if kind not in (_DLPACK_CPU, 3):  # 3: CUDA pinned host memory, readable by the CPU
            raise RuntimeError(f"from_dlpack: the producer's memory is on DLPack device type {kind} "
                               f"(index {index}); this attnkit build has only the CPU backend")
    if hasattr(obj, "__dlpack__"):
        try:
            capsule = obj.__dlpack__(max_version=(1, 0))
        except TypeError:  # a producer older than DLPack 1.0 takes no max_version
            capsule = obj.__dlpack__()
    else:
        capsule = obj  # a bare capsule, as older libraries hand out
    try:
        return Tensor._wrap(_C.array_from_dlpack_capsule(capsule))
    except TypeError as error:
        if "incompatible function arguments" in str(error):
            raise TypeError(f"from_dlpack: argument 'obj' expected an object with __dlpack__ "
                            f"or a DLPack capsule, got {type(obj).__name__}") from None
        raise
