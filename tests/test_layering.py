"""The package's layers. Its import graph has no circles: every import of an
attnkit module counts, at the top of a file or inside a function (an import
moved into a function to dodge a circle still makes one, postponed to the
first call). The lower layers do not import the upper ones, and a tensor's
native array is reached only by the modules that own it."""

from __future__ import annotations

import ast
from pathlib import Path

import attnkit

PACKAGE_ROOT = Path(attnkit.__file__).parent


def module_name(path: Path) -> str:
    parts = ["attnkit", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the attnkit modules it imports (a name imported from a
    package counts as its submodule when there is one)."""
    files = {module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}
    extensions = {f"attnkit.{path.name.split('.')[0]}" for path in PACKAGE_ROOT.glob("*.so")} | {"attnkit._C"}
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files.keys() | extensions else base
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in files and t != name and t not in extensions)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "attnkit.tensor" in graph["attnkit"]
    assert "attnkit._C" not in graph  # an extension module has no source to read


def test_no_import_circles():
    assert circles(import_graph()) == []


# What each lower layer must not import (a prefix matches the package and its modules).
FORBIDDEN_IMPORTS = {
    "attnkit.tensor": ("attnkit.autograd", "attnkit.ops", "attnkit.nn", "attnkit.optim", "attnkit.models"),
    "attnkit.autograd": ("attnkit.ops", "attnkit.nn", "attnkit.optim", "attnkit.models"),
    "attnkit.ops": ("attnkit.nn", "attnkit.optim", "attnkit.models"),
    "attnkit.optim": ("attnkit.nn", "attnkit.models"),
    "attnkit.nn": ("attnkit.models", "attnkit.training", "attnkit.generation"),
}


def test_lower_layers_do_not_import_upper_ones():
    graph = import_graph()
    found = [
        (module, target)
        for module, targets in graph.items()
        for layer, forbidden in FORBIDDEN_IMPORTS.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    ]
    assert found == []


# The modules that own a tensor's native array (Tensor._array, Tensor._wrap):
# the tensor itself, the autograd, the ops that call kernels, Parameter (a
# Tensor subclass) and _tensor_data, the helper everything else goes through.
NATIVE_ARRAY_OWNERS = ("attnkit.tensor", "attnkit._tensor_methods", "attnkit.autograd", "attnkit._tensor_data")
NATIVE_ARRAY_OWNER_PACKAGES = ("attnkit.ops.", "attnkit.nn.functional.")
NATIVE_ARRAY_OWNERS += ("attnkit.optim.functional", "attnkit.nn.parameter")


def native_array_users() -> dict[str, list[str]]:
    """module -> the lines that touch ``._array`` / ``._wrap`` or call
    ``_C.random_bits`` (random.py's to wrap)."""
    users = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = name in NATIVE_ARRAY_OWNERS or name.startswith(NATIVE_ARRAY_OWNER_PACKAGES)
            if (node.attr in ("_array", "_wrap") and not owner) or (
                node.attr == "random_bits" and name != "attnkit.random"
            ):
                users.setdefault(name, []).append(f"line {node.lineno}: .{node.attr}")
    return users


def test_native_arrays_are_reached_through_their_owners():
    assert native_array_users() == {}


if __name__ == "__main__":
    for component in circles(import_graph()):
        print("circle:", len(component), " ".join(component))
    for module, lines in sorted(native_array_users().items()):
        print("native array:", module, len(lines))
