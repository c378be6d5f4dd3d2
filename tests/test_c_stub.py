"""attnkit/_C.pyi, the type stub of the native module: it lists every
binding, and it is what .ci/generate_c_stub.py writes from the module as
built (so a new or changed binding cannot leave it stale)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from attnkit import _C

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "python" / "attnkit" / "_C.pyi"
GENERATOR = REPO / ".ci" / "generate_c_stub.py"


def stub_names() -> dict[str, set]:
    """Top-level names of the stub -> the member names (for a class)."""
    names = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


def test_the_stub_lists_every_binding():
    names = stub_names()
    bindings = {n for n in dir(_C) if not n.startswith("__")}
    assert bindings - names.keys() == set()
    assert names.keys() - bindings == set()
    assert {m for m in vars(_C.Array) if not m.startswith("_")} == names["Array"]


def test_the_stub_is_what_the_generator_writes():
    if not GENERATOR.exists():
        pytest.skip("the generator is in the repository's .ci/, not in this checkout")
    spec = importlib.util.spec_from_file_location("generate_c_stub", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert STUB.read_text() == generator.render(_C), "run python .ci/generate_c_stub.py"
