"""Module: the base class of every layer and model, as torch.nn.Module.

A module owns three ordered name -> value tables, filled by plain attribute
assignment: parameters (``Parameter`` values), buffers (tensors registered
with ``register_buffer``: state that is not learned, such as a position
table) and submodules (``Module`` values). Everything that walks a model -
``parameters()``, ``state_dict()``, ``train()``, ``to()`` - walks these
tables in registration order, so names and orders are stable and match
PyTorch's for the same layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable, NamedTuple

from .. import _dtypes
from .._tensor_data import copy_into, raw_bytes, set_memory
from ..autograd import no_grad
from ..tensor import Tensor
from ..tensor import device as Device
from .parameter import Parameter


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not match."""

    missing_keys: list
    unexpected_keys: list


def _check_name(op: str, name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{op}: argument 'name' expected a str, got {type(name).__name__}")
    if name == "" or "." in name:
        raise ValueError(f"{op}: argument 'name' expected a non-empty name without '.', got {name!r}")


def _indent(text: str, spaces: int) -> str:
    """Indents every line of ``text`` but the first (the first follows a label)."""
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


def _parse_to_arguments(args, device, dtype):
    """Module.to's (device, dtype) from positional and keyword arguments,
    each positional one read as a device if it names one, else as a dtype."""
    for argument in args:
        if isinstance(argument, Device) or (isinstance(argument, str) and argument.split(":")[0] in ("cpu", "cuda")):
            if device is not None:
                raise TypeError("to: the device was given twice")
            device = argument
        else:
            if dtype is not None:
                raise TypeError("to: the dtype was given twice")
            dtype = argument
    if device is not None:
        device = Device(device)
    if dtype is not None:
        dtype = _dtypes.as_dtype(dtype, "to")
    return device, dtype


class Module:
    """Base class for layers and models. Subclasses call
    ``super().__init__()`` first, assign their parameters, buffers and
    submodules as attributes, and define ``forward``; calling the module
    calls ``forward``.

    ``training`` is True after construction and follows ``train()`` /
    ``eval()`` (dropout reads it).
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these tables to exist.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define it in the subclass")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------ registration --
    def _require_init(self, op: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{op}: call super().__init__() in {type(self).__name__}.__init__ "
                f"before assigning parameters, buffers or submodules"
            )

    def _forget(self, name: str) -> None:
        """Removes ``name`` from every table and from the instance dict."""
        self.__dict__.pop(name, None)
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._non_persistent_buffers.discard(name)
        self._modules.pop(name, None)

    def register_parameter(self, name: str, parameter: Parameter | None) -> None:
        """Adds a parameter (or None: a declared but absent one, such as a
        disabled bias, which every walk skips)."""
        self._require_init("register_parameter")
        _check_name("register_parameter", name)
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(
                f"register_parameter: '{name}' expected an attnkit.nn.Parameter or None, "
                f"got {type(parameter).__name__}; wrap a tensor as nn.Parameter(tensor)"
            )
        if name not in self._parameters and hasattr(type(self), name):
            raise KeyError(f"register_parameter: '{name}' is a class attribute of {type(self).__name__}")
        self._forget(name)
        self._parameters[name] = parameter

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Adds a buffer: a tensor the module keeps and moves with it but does
        not learn. Persistent buffers are part of ``state_dict()``;
        non-persistent ones (a table recomputed at construction) are not."""
        self._require_init("register_buffer")
        _check_name("register_buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: '{name}' expected an attnkit.Tensor or None, got {type(tensor).__name__}"
            )
        if isinstance(tensor, Parameter):
            raise TypeError(
                f"register_buffer: '{name}' is a Parameter; assign it as an attribute to register a parameter"
            )
        if not isinstance(persistent, bool):
            raise TypeError(f"register_buffer: argument 'persistent' expected a bool, got {type(persistent).__name__}")
        if name not in self._buffers and hasattr(type(self), name):
            raise KeyError(f"register_buffer: '{name}' is a class attribute of {type(self).__name__}")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Adds a submodule (or None: a declared but absent one)."""
        self._require_init("add_module")
        _check_name("add_module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' expected an attnkit.nn.Module or None, got {type(module).__name__}")
        if name not in self._modules and hasattr(type(self), name):
            raise KeyError(f"add_module: '{name}' is a class attribute of {type(self).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        tables = self.__dict__.get("_parameters") is not None
        if isinstance(value, Parameter):
            self._register_by_assignment("_parameters", name, value)
        elif tables and name in self._parameters:
            self._assign_to_slot(self._parameters, "parameter", name, value, Parameter, "an attnkit.nn.Parameter")
        elif isinstance(value, Module):
            self._register_by_assignment("_modules", name, value)
        elif tables and name in self._modules:
            self._assign_to_slot(self._modules, "submodule", name, value, Module, "an attnkit.nn.Module")
        elif tables and name in self._buffers:
            self._assign_to_slot(self._buffers, "buffer", name, value, Tensor, "an attnkit.Tensor")
        else:
            object.__setattr__(self, name, value)

    def _register_by_assignment(self, table_name: str, name: str, value) -> None:
        """``self.name = value`` for a Parameter or a Module: it goes into its
        table, in place of whatever ``name`` named before."""
        self._require_init("__setattr__")
        self._forget(name)
        getattr(self, table_name)[name] = value

    def _assign_to_slot(self, table: dict, kind: str, name: str, value, allowed: type, expected: str) -> None:
        """Assigns to a name ``table`` already holds: None empties the slot, a
        value of type ``allowed`` fills it, anything else is refused. (A
        Parameter or a Module being assigned is registered before this.)"""
        if value is not None and not isinstance(value, allowed):
            raise TypeError(
                f"cannot assign {type(value).__name__} to {kind} '{name}' of "
                f"{type(self).__name__}: expected {expected} or None"
            )
        table[name] = value

    def __getattr__(self, name: str):
        # Called only when ordinary lookup fails: the tables are searched here.
        tables = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in tables and name in tables[table]:
                return tables[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        if name in self._parameters or name in self._buffers or name in self._modules:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # ------------------------------------------------------------- walks --
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple]:
        """(name, module) for this module and every descendant, depth first
        in registration order; a module reachable twice appears once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, table: str, prefix: str, recurse: bool, remove_duplicate: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple]:
        """(dotted name, parameter) pairs. A parameter shared by several
        modules (tied embeddings) appears once, under its first name."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path ('' is this module)."""
        module = self
        walked = []
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(f"get_submodule: {where} has no submodule '{part}' (looking for '{target}')")
            walked.append(part)
            module = child
        return module

    # ------------------------------------------------------------- modes --
    def train(self, mode: bool = True) -> Module:
        """Sets training mode on this module and every descendant; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: argument 'mode' expected a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode (``train(False)``): dropout passes inputs through."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drops every parameter's gradient (or zeroes it in place with
        ``set_to_none=False``). Gradients accumulate until this is called."""
        for parameter in self.parameters():
            if parameter.grad is None:
                continue
            if set_to_none:
                parameter.grad = None
            else:
                raw_bytes(parameter.grad)[...] = 0

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Calls ``fn`` on every submodule (children first), then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---------------------------------------------------- device and dtype --
    def to(self, *args, device=None, dtype=None) -> Module:
        """Moves to a device and/or converts floating-point parameters and
        buffers to a dtype, in place; returns self. ``to("cpu")``,
        ``to(attnkit.float16)``, ``to("cpu", attnkit.float32)``.

        Parameters keep their identity (an optimizer built on them stays
        valid) and their ``requires_grad``; a converted parameter drops its
        gradient. This build has only the CPU backend: a CUDA device raises
        RuntimeError."""
        device, dtype = _parse_to_arguments(args, device, dtype)
        if device is not None and device.type != "cpu":
            raise RuntimeError(
                f"to: cannot move {type(self).__name__} to {device}: this attnkit "
                f"was built without the CUDA backend; only 'cpu' is available"
            )
        if dtype is not None:
            if not dtype.is_floating_point:
                raise TypeError(
                    f"to: a module converts to a floating-point dtype (float32, float16, bfloat16), got {dtype}"
                )
            self._convert_floating(dtype)
        return self

    def _convert_floating(self, dtype) -> None:
        converted = set()
        for module in self.modules():
            for table in (module._parameters, module._buffers):
                for _name, tensor in table.items():
                    if tensor is None or id(tensor) in converted or not tensor.dtype.is_floating_point:
                        continue
                    converted.add(id(tensor))
                    if tensor.dtype == dtype:
                        continue
                    # Swapping the storage in place keeps the object, so tied
                    # weights stay tied and optimizers keep their references.
                    set_memory(tensor, tensor.detach().to(dtype))
                    tensor.grad = None

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device=None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Module:
        return self.to(dtype=_dtypes.float32)

    # --------------------------------------------------------- state dict --
    def _state_entries(self, prefix: str = "") -> Iterator[tuple]:
        """(key, tensor) for every parameter and persistent buffer, by module:
        its parameters, its buffers, then its children. Not deduplicated: a
        tied weight appears under each of its names, as in PyTorch, so every
        name a checkpoint may use is present."""
        for name, parameter in self._parameters.items():
            if parameter is not None:
                yield prefix + name, parameter
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                yield prefix + name, buffer
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_entries(f"{prefix}{name}.")

    def state_dict(self, *, prefix: str = "", keep_vars: bool = False) -> dict:
        """An ordered dict from dotted names to tensors: every parameter and
        persistent buffer. The tensors share memory with the module (save
        them, or copy them, before training on). ``keep_vars=True`` returns
        the Parameter objects themselves instead of detached tensors."""
        return {key: (tensor if keep_vars else tensor.detach()) for key, tensor in self._state_entries(prefix)}

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copies ``state_dict``'s tensors into this module's parameters and
        persistent buffers, in place (bit for bit when the dtypes agree;
        converted otherwise).

        Everything is checked before anything is copied. ValueError, listing
        every problem, when a shape differs, or, with ``strict=True`` (the
        default), when a key of the module is missing from ``state_dict`` or
        ``state_dict`` has a key the module lacks. With ``strict=False`` the
        matching keys are loaded and (missing_keys, unexpected_keys) is
        returned. A non-tensor value raises TypeError.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"load_state_dict: argument 'state_dict' expected a dict of tensors, got {type(state_dict).__name__}"
            )
        if not isinstance(strict, bool):
            raise TypeError(f"load_state_dict: argument 'strict' expected a bool, got {type(strict).__name__}")
        expected = dict(self._state_entries())
        for key, value in state_dict.items():
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"load_state_dict: entry '{key}' expected an attnkit.Tensor, got {type(value).__name__}"
                )
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        mismatched = [
            f"{key}: the checkpoint has shape {tuple(state_dict[key].shape)}, the module {tuple(target.shape)}"
            for key, target in expected.items()
            if key in state_dict and tuple(state_dict[key].shape) != tuple(target.shape)
        ]
        # An int8 (quantized) weight takes int8 values only: a float weight
        # would be truncated to integers, not quantized with its scales.
        wrong_dtype = [
            f"{key}: the checkpoint has dtype {state_dict[key].dtype.name}, the module int8 (a quantized weight; "
            "load the float weights into the float model, then quantize it)"
            for key, target in expected.items()
            if key in state_dict and target.dtype.name == "int8" and state_dict[key].dtype.name != "int8"
        ]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches (an error also with strict=False): " + "; ".join(mismatched))
        if wrong_dtype:
            problems.append("dtype mismatches (an error also with strict=False): " + "; ".join(wrong_dtype))
        if problems:
            raise ValueError(
                f"load_state_dict: the state dict does not fit {type(self).__name__}: " + "; ".join(problems)
            )
        with no_grad():
            for key, target in expected.items():
                if key in state_dict:
                    copy_into(target, state_dict[key])
        return IncompatibleKeys(missing, unexpected)

    # --------------------------------------------------------------- repr --
    def extra_repr(self) -> str:
        """The module's own settings, shown in its repr (override in subclasses)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def _child_lines(self) -> list:
        return [f"({name}): " + _indent(repr(module), 2) for name, module in self._modules.items()]

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = self._child_lines()
        if not child_lines and len(extra_lines) <= 1:
            return f"{self._get_name()}({extra})"
        body = "\n  ".join(extra_lines + child_lines)
        return f"{self._get_name()}(\n  {body}\n)"


__all__ = ["Module", "IncompatibleKeys"]
