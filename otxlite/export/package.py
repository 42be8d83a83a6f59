"""A deployment folder: an IR with two scripts that run it (OpenVINO Model API, and otxlite's own runtime
shipped beside it), ``requirements.txt`` pinned to the versions otxlite was tested with, and a README."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import shutil
from pathlib import Path

from otxlite.core.artifacts import ModelMetadata

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the otxlite package
SCRIPTS = PACKAGE_ROOT / "assets" / "deployment"
RUNTIME_ENTRY = ("otxlite.runtime.predictor", "otxlite.core.images")  # what run_runtime.py imports
# The runtime's dependencies, pinned to this installation's versions; Model API to the version its check ran on.
REQUIREMENTS = ("openvino", "numpy", "opencv-python-headless", "pillow")
MODEL_API = ("openvino-model-api", "0.4.7")


def runtime_modules() -> list[str]:
    """The otxlite modules the runtime imports when loaded (module-level imports, followed transitively), with
    the packages above them: what ``run_runtime.py`` needs beside it."""
    found: set[str] = set()
    pending = list(RUNTIME_ENTRY)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run their __init__
        tree = ast.parse(_source(name).read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("otxlite"):
                pending.append(node.module)
                pending += [f"{node.module}.{a.name}" for a in node.names if _source(f"{node.module}.{a.name}", False)]
            elif isinstance(node, ast.Import):
                pending += [a.name for a in node.names if a.name.startswith("otxlite")]
    return sorted(found)


def _source(module: str, required: bool = True) -> Path | None:
    """The file of an otxlite module or package (None if it is not one and not ``required``)."""
    base = PACKAGE_ROOT.parent.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    if required:
        raise FileNotFoundError(f"otxlite module {module} not found under {PACKAGE_ROOT}")
    return None


def requirements() -> str:
    """``requirements.txt``: the runtime's packages at the versions installed here, and Model API."""
    lines = [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]
    try:
        lines.append(f"{MODEL_API[0]}=={metadata.version(MODEL_API[0])}")
    except metadata.PackageNotFoundError:
        lines.append(f"{MODEL_API[0]}=={MODEL_API[1]}")
    return "\n".join(lines) + "\n"


def write_deployment(xml: Path, record: ModelMetadata, folder: Path) -> Path:
    """Make ``folder`` a deployment folder for the IR ``xml`` (copied in unless it is there already)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".xml", ".bin"):
        target = folder / f"openvino{suffix}"
        if Path(xml).with_suffix(suffix).resolve() != target.resolve():
            shutil.copyfile(Path(xml).with_suffix(suffix), target)
    for script in ("run_model_api.py", "run_runtime.py"):
        shutil.copyfile(SCRIPTS / script, folder / script)
    for module in runtime_modules():
        source = _source(module)
        target = folder.joinpath(*source.relative_to(PACKAGE_ROOT.parent).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (folder / "requirements.txt").write_text(requirements())
    (folder / "README.md").write_text(_readme(record))
    return folder


def _readme(record: ModelMetadata) -> str:
    family = record.model_family
    return f"""# {record.template_id or 'otxlite model'} ({family.title}), {record.precision}

Labels: {', '.join(record.labels)}. Input {record.input_size[0]}x{record.input_size[1]} (any image size is resized
to it). Confidence threshold {record.confidence_threshold:g}. Exported by otxlite {record.otxlite_version}.

```bash
python -m venv .venv && .venv/bin/pip install -r requirements.txt
.venv/bin/python run_model_api.py photo.jpg      # OpenVINO Model API ({family.model_api_type})
.venv/bin/python run_runtime.py photo.jpg        # otxlite's runtime (in otxlite/), the same detections
```

Each prints one JSON line per image: every detection's label, score, box (x1, y1, x2, y2 in image pixels) and
mask size in pixels. `openvino.xml`/`.bin` is the model with its post-processing inside; its `rt_info` says how to
read the outputs (`model_info` for Model API, `otxlite` for otxlite).
"""
