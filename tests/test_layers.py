"""The import rules of the layers (a folder is a layer): each layer imports only the otxlite layers below it;
the OpenVINO runtime (otxlite/runtime) and the HTTP server (otxlite/serve) never import training, export or the
PyTorch stack, not even inside a function; the shared core (otxlite/core) imports the PyTorch stack only inside
the functions that read or write weights.pth."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "otxlite"
PYTORCH_STACK = ("torch", "mmdet", "mmcv", "mmengine", "mmdeploy", "nncf")
# The otxlite layers each layer may import (itself included). cli renders, app runs the verbs, the rest is below.
MAY_IMPORT = {
    "core": {"core"},
    "models": {"models"},
    "data": {"core", "data"},
    "report": {"core", "report"},
    "runtime": {"core", "runtime"},
    "serve": {"core", "runtime", "serve"},
    "training": {"core", "data", "models", "report", "training"},
    "export": {"core", "export", "models"},
    "app": {"core", "data", "models", "report", "runtime", "serve", "training", "export", "app"},
    "cli": {"core", "data", "serve", "app", "cli"},
}


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


def within(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def layer_files(*layers: str) -> list[Path]:
    return [path for layer in layers for path in sorted((PACKAGE / layer).glob("*.py"))]


def test_every_module_is_in_a_layer() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert loose == [] and folders == sorted(MAY_IMPORT)


@pytest.mark.parametrize("path", layer_files(*MAY_IMPORT), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_layer_imports_only_the_layers_below_it(path: Path) -> None:
    layers = {m.split(".")[1] for m in within(imports(path), ("otxlite",)) if m.count(".")}
    assert layers <= MAY_IMPORT[path.parent.name], sorted(layers - MAY_IMPORT[path.parent.name])


@pytest.mark.parametrize("path", layer_files("runtime", "serve"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_runtime_and_serve_never_import_the_pytorch_stack(path: Path) -> None:
    assert within(imports(path), PYTORCH_STACK) == []


@pytest.mark.parametrize("path", layer_files("core"), ids=lambda p: p.name)
def test_core_imports_the_pytorch_stack_only_where_weights_are_read(path: Path) -> None:
    assert within(imports(path, top_level_only=True), PYTORCH_STACK) == []
