"""The import rules of the layers (a top-level folder of the package is a layer, its sub-packages included): each
layer imports only the otxlite layers below it; no verb (``otxlite/app``) imports another verb; the OpenVINO
runtime (otxlite/runtime) and the HTTP server (otxlite/serve) never import training, export or the PyTorch stack,
not even inside a function; the shared core (otxlite/core) and the family declarations import the PyTorch stack
only inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "otxlite"
PYTORCH_STACK = ("torch", "mmdet", "mmcv", "mmengine", "mmdeploy", "nncf")
# The otxlite layers each layer may import (itself included). cli renders, app runs the verbs, the rest is below.
MAY_IMPORT = {
    "families": {"families"},
    "core": {"core", "families"},
    "models": {"models", "families"},
    "data": {"core", "data"},
    "report": {"core", "report"},
    "runtime": {"core", "families", "report", "runtime"},
    "serve": {"core", "runtime", "serve"},
    "training": {"core", "data", "families", "models", "report", "training"},
    "export": {"core", "data", "export", "families", "models"},
    "quantization": {"core", "data", "export", "quantization", "runtime"},
    "tuning": {"core", "data", "families", "models", "report", "training", "tuning"},
    "app": {"core", "data", "families", "models", "report", "runtime", "serve", "training", "export",
            "quantization", "tuning"},
    "cli": {"core", "data", "serve", "app", "cli"},
}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (``top_level_only``: outside functions), ``from otxlite import layer`` as
    ``otxlite.layer``."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "otxlite":
                found |= {f"otxlite.{alias.name}" for alias in node.names if (PACKAGE / alias.name).is_dir()}
    return found


def within(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def layer_files(*layers: str) -> list[Path]:
    return [path for layer in layers for path in sorted((PACKAGE / layer).rglob("*.py"))]


def label(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_every_module_is_in_a_layer() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert loose == [] and folders == sorted(MAY_IMPORT)


@pytest.mark.parametrize("path", layer_files(*MAY_IMPORT), ids=label)
def test_each_layer_imports_only_the_layers_below_it(path: Path) -> None:
    layers = {m.split(".")[1] for m in within(imports(path), ("otxlite",)) if m.count(".")}
    assert layers <= MAY_IMPORT[layer_of(path)], sorted(layers - MAY_IMPORT[layer_of(path)])


@pytest.mark.parametrize("path", layer_files("app"), ids=label)
def test_no_verb_imports_another_verb(path: Path) -> None:
    assert within(imports(path), ("otxlite.app",)) == []


@pytest.mark.parametrize("path", layer_files("runtime", "serve"), ids=label)
def test_runtime_and_serve_never_import_the_pytorch_stack(path: Path) -> None:
    assert within(imports(path), PYTORCH_STACK) == []


@pytest.mark.parametrize("path", [*layer_files("core"), *PACKAGE.glob("families/*.py"),
                                  *PACKAGE.glob("families/*/__init__.py")], ids=label)
def test_core_and_family_declarations_import_the_pytorch_stack_only_inside_functions(path: Path) -> None:
    assert within(imports(path, top_level_only=True), PYTORCH_STACK) == []


def test_the_checks_see_nested_modules_and_package_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from otxlite import app\n\ndef f():\n    import torch\n")
    assert within(imports(module), ("otxlite.app",)) == ["otxlite.app"]
    assert within(imports(module, top_level_only=True), PYTORCH_STACK) == []
    assert within(imports(module), PYTORCH_STACK) == ["torch"]
    assert PACKAGE / "families" / "rtmdet_ins" / "export.py" in layer_files("families")
