"""Parameter: a tensor that a Module registers as one of its learnable weights."""

from __future__ import annotations

from ..tensor import Tensor, empty


class Parameter(Tensor):
    """A leaf tensor that requires a gradient (unless ``requires_grad=False``)
    and that a ``Module`` registers as a parameter when assigned to one of its
    attributes. ``Parameter(t)`` shares ``t``'s memory, as in PyTorch; the
    result of an op on a parameter is a plain ``Tensor``."""

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: argument 'data' expected an attnkit.Tensor, got {type(data).__name__}")
        if not isinstance(requires_grad, bool):
            raise TypeError(f"Parameter: argument 'requires_grad' expected a bool, got {type(requires_grad).__name__}")
        parameter = cls._wrap(data._array)
        if requires_grad:
            parameter.requires_grad_(True)  # refuses integer dtypes with a clear error
        return parameter

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        # Everything happens in __new__; this only stops Tensor.__init__,
        # which refuses direct construction.
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def empty_parameter(shape) -> Parameter:
    """A float32 parameter of ``shape`` whose values a module's reset_parameters sets."""
    return Parameter(empty(*shape))


__all__ = ["Parameter"]
