"""Tensor's operators, op methods and ``backward``, set on ``attnkit.Tensor``.

They live here rather than in tensor.py because each calls an op of
``attnkit.ops`` or ``attnkit.autograd``, and those build tensors: defined in
the class body, they would make tensor.py and the ops import each other.
attnkit's ``__init__`` imports this module once, so every ``Tensor`` has them
from ``import attnkit`` on (as JAX sets its Array's operators from its numpy
layer).
"""

from __future__ import annotations

from . import _C
from .autograd import run_backward
from .ops import elementwise as _elementwise
from .ops import shape as _shape
from .ops.gemm import matmul as _matmul
from .tensor import Tensor, tensor


class TensorMethods:
    """The members copied onto ``Tensor`` (see ``install``)."""

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulates d(self)/d(leaf) * gradient into every leaf's ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(
                    f"backward(): a gradient must be given for a non-scalar output of shape {self.shape}"
                )
            grad = _C.empty(list(self.shape), "float32")
            _C.fill_(grad, 1)
            if self._array.dtype != "float32":  # 1 is exact in every float dtype
                grad = _C.cast(grad, self._array.dtype)
        else:
            if not isinstance(gradient, Tensor):
                gradient = tensor(gradient, dtype=self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward(): argument 'gradient' expected shape {self.shape}, got {gradient.shape}")
            if gradient.dtype != self.dtype:
                raise TypeError(f"backward(): argument 'gradient' expected dtype {self.dtype}, got {gradient.dtype}")
            grad = gradient._array
        run_backward(self, grad, retain_graph=retain_graph)

    # ----------------------------------------------------------- operators --
    # Arithmetic is float32 with numpy broadcasting; a Python number on either
    # side is rounded to float32. Anything else gives NotImplemented, so Python
    # raises its usual TypeError (or tries the other operand's method).
    def _arithmetic(self, op, other, reflected=False):
        if not isinstance(other, Tensor) and not _elementwise.is_scalar(other):
            return NotImplemented
        return _elementwise.arithmetic(op, other, self) if reflected else _elementwise.arithmetic(op, self, other)

    def __add__(self, other):
        return self._arithmetic("add", other)

    def __radd__(self, other):
        return self._arithmetic("add", other, reflected=True)

    def __sub__(self, other):
        return self._arithmetic("sub", other)

    def __rsub__(self, other):
        return self._arithmetic("sub", other, reflected=True)

    def __mul__(self, other):
        return self._arithmetic("mul", other)

    def __rmul__(self, other):
        return self._arithmetic("mul", other, reflected=True)

    def __truediv__(self, other):
        return self._arithmetic("div", other)

    def __rtruediv__(self, other):
        return self._arithmetic("div", other, reflected=True)

    def __neg__(self):
        return _elementwise.neg(self)

    def __pos__(self):
        return self

    def __matmul__(self, other):
        if not isinstance(other, Tensor):
            return NotImplemented
        return _matmul(self, other)

    def _comparison(self, op, other):
        if not isinstance(other, Tensor) and not _elementwise.is_scalar(other):
            return NotImplemented
        return _elementwise.compare(op, self, other)

    def __eq__(self, other):
        return self._comparison("eq", other)

    def __ne__(self, other):
        return self._comparison("ne", other)

    def __lt__(self, other):
        return self._comparison("lt", other)

    def __le__(self, other):
        return self._comparison("le", other)

    def __gt__(self, other):
        return self._comparison("gt", other)

    def __ge__(self, other):
        return self._comparison("ge", other)

    # == builds a tensor, so hashing stays by identity (as in PyTorch).
    __hash__ = object.__hash__

    def __invert__(self):
        return _elementwise.logical_not(self)

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"bool(): the truth value of a tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        if self.numel() != 1:
            raise TypeError(f"float(): only a tensor with one element converts, got shape {self.shape}")
        return float(self.item())

    def __getitem__(self, key) -> Tensor:
        return _shape.getitem(self, key)

    # ------------------------------------------------------------- methods --
    def add(self, other) -> Tensor:
        return _elementwise.add(self, other)

    def sub(self, other) -> Tensor:
        return _elementwise.sub(self, other)

    def mul(self, other) -> Tensor:
        return _elementwise.mul(self, other)

    def div(self, other) -> Tensor:
        return _elementwise.div(self, other)

    def neg(self) -> Tensor:
        return _elementwise.neg(self)

    def matmul(self, other) -> Tensor:
        return _matmul(self, other)

    def sum(self, dim=None, keepdim: bool = False) -> Tensor:
        return _elementwise.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False) -> Tensor:
        return _elementwise.mean(self, dim, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return _elementwise.max(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False) -> Tensor:
        return _elementwise.argmax(self, dim, keepdim)

    def eq(self, other) -> Tensor:
        return _elementwise.eq(self, other)

    def ne(self, other) -> Tensor:
        return _elementwise.ne(self, other)

    def lt(self, other) -> Tensor:
        return _elementwise.lt(self, other)

    def le(self, other) -> Tensor:
        return _elementwise.le(self, other)

    def gt(self, other) -> Tensor:
        return _elementwise.gt(self, other)

    def ge(self, other) -> Tensor:
        return _elementwise.ge(self, other)

    def masked_fill(self, mask, value) -> Tensor:
        return _elementwise.masked_fill(self, mask, value)

    def reshape(self, *shape) -> Tensor:
        return _shape.reshape(self, *shape)

    def view(self, *shape) -> Tensor:
        """reshape: tensors are always contiguous, so every view is a reshape."""
        return _shape.reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _shape.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return _shape.unsqueeze(self, dim)

    def squeeze(self, dim=None) -> Tensor:
        return _shape.squeeze(self, dim)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        return _shape.transpose(self, dim0, dim1)

    def permute(self, *dims) -> Tensor:
        return _shape.permute(self, *dims)

    @property
    def T(self) -> Tensor:
        """The transpose of a 2-d tensor (a copy); 0-d and 1-d tensors are their own."""
        if self.ndim < 2:
            return self
        if self.ndim != 2:
            raise ValueError(f"T: expected at most 2 dimensions, got shape {self.shape}; use permute()")
        return _shape.transpose(self, 0, 1)

    def contiguous(self) -> Tensor:
        """self: attnkit tensors are always contiguous."""
        return self

    def expand(self, *shape) -> Tensor:
        return _shape.expand(self, *shape)

    def split(self, split_size_or_sections, dim: int = 0) -> tuple:
        return _shape.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        return _shape.chunk(self, chunks, dim)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        return _shape.narrow(self, dim, start, length)

    def index_select(self, dim: int, index) -> Tensor:
        return _shape.index_select(self, dim, index)

    def gather(self, dim: int, index) -> Tensor:
        return _shape.gather(self, dim, index)

    def clone(self) -> Tensor:
        return _shape.clone(self)


def install() -> None:
    """Sets every method and property of TensorMethods on Tensor (Parameter,
    a subclass, inherits them); the class's own bookkeeping (``__module__``,
    ``__dict__``, ...) stays behind."""
    for name, member in vars(TensorMethods).items():
        if callable(member) or isinstance(member, property):
            setattr(Tensor, name, member)


install()
