"""The package's import graph: no circles. Every import of an attnkit module
counts, at the top of a file or inside a function: an import moved into a
function to dodge a circle still makes one (the circle is only postponed to
the first call)."""

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


if __name__ == "__main__":
    for component in circles(import_graph()):
        print(len(component), " ".join(component))
