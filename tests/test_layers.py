"""The import rules of the layers: the OpenVINO runtime (otxlite/inference) and the HTTP server (otxlite/serve)
never import training, export or the PyTorch stack, not even inside a function; the artifact contract
(otxlite/core) imports the PyTorch stack only inside the functions that read or write weights.pth."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "otxlite"
TRAINING_SIDE = ("otxlite.engine", "otxlite.export", "otxlite.optimize", "otxlite.accuracy_control", "torch", "mmdet",
                 "mmcv", "mmengine", "mmdeploy", "nncf")


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (``top_level_only``: outside functions)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in TRAINING_SIDE))


@pytest.mark.parametrize("path", sorted((PACKAGE / "inference").glob("*.py")) + sorted((PACKAGE / "serve").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_runtime_and_serve_never_import_the_training_side(path: Path) -> None:
    assert forbidden(imports(path)) == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_imports_the_pytorch_stack_only_where_weights_are_read(path: Path) -> None:
    assert forbidden(imports(path, top_level_only=True)) == []
    assert not any(m.startswith(("otxlite.engine", "otxlite.export")) for m in imports(path))
