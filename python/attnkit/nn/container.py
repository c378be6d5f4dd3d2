"""Containers: Sequential, ModuleList and ModuleDict, as in torch.nn. Their
entries are registered submodules, so parameters, state_dict keys
("layers.0.weight") and repr follow them."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator

from .module import Module, _indent


def _check_module(op: str, value) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{op}: expected an attnkit.nn.Module, got {type(value).__name__}")
    return value


def _collapsed_child_lines(modules: dict) -> list:
    """Child lines of an indexed container, with a run of equal-looking
    consecutive entries shown once: "(0-11): 12 x Block(...)"."""
    lines = []
    names = list(modules)
    texts = [repr(modules[name]) for name in names]
    start = 0
    while start < len(names):
        end = start
        while end + 1 < len(names) and texts[end + 1] == texts[start]:
            end += 1
        if end > start:
            label = f"({names[start]}-{names[end]}): {end - start + 1} x "
        else:
            label = f"({names[start]}): "
        lines.append(label + _indent(texts[start], 2))
        start = end + 1
    return lines


def _index(op: str, index, length: int) -> int:
    if not isinstance(index, numbers.Integral) or isinstance(index, bool):
        raise TypeError(f"{op}: indices must be integers or slices, got {type(index).__name__}")
    index = int(index)
    if not -length <= index < length:
        raise IndexError(f"{op}: index {index} is out of range for {length} modules")
    return index + length if index < 0 else index


class ModuleList(Module):
    """A list of modules, registered as "0", "1", ...; indexing, iteration,
    ``append``, ``extend``, ``insert`` and ``del`` as a Python list (the
    names are renumbered to stay 0..n-1). It has no forward."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _entries(self) -> list:
        return list(self._modules.values())

    def _reset(self, modules: list) -> None:
        self._modules.clear()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._entries())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._entries()[index])
        return self._entries()[_index("ModuleList", index, len(self))]

    def __setitem__(self, index, module: Module) -> None:
        index = _index("ModuleList", index, len(self))
        self.add_module(str(index), _check_module("ModuleList", module))

    def __delitem__(self, index) -> None:
        entries = self._entries()
        if isinstance(index, slice):
            del entries[index]
        else:
            del entries[_index("ModuleList", index, len(entries))]
        self._reset(entries)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), _check_module("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList, Sequential)):
            raise TypeError(f"ModuleList.extend: expected an iterable of modules, got {type(modules).__name__}")
        for module in list(modules):
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        entries = self._entries()
        entries.insert(index, _check_module("ModuleList.insert", module))
        self._reset(entries)

    def _child_lines(self) -> list:
        return _collapsed_child_lines(self._modules)


class Sequential(Module):
    """Modules called in order, each on the previous one's output:
    ``Sequential(Linear(4, 8), Linear(8, 2))``. Indexable like ModuleList."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, module in enumerate(modules):
            self.add_module(str(i), _check_module("Sequential", module))

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __getitem__(self, index):
        entries = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*entries[index])
        return entries[_index("Sequential", index, len(entries))]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), _check_module("Sequential.append", module))
        return self

    def _child_lines(self) -> list:
        return _collapsed_child_lines(self._modules)


class ModuleDict(Module):
    """A dict of modules registered under their keys, in insertion order."""

    def __init__(self, modules: dict | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict has no module '{key}'")
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _check_module("ModuleDict", module))

    def __delitem__(self, key: str) -> None:
        if key not in self._modules:
            raise KeyError(f"ModuleDict has no module '{key}'")
        del self._modules[key]

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        pairs = modules.items() if isinstance(modules, (dict, ModuleDict)) else modules
        for key, module in pairs:
            self[key] = module


__all__ = ["ModuleList", "Sequential", "ModuleDict"]
