"""The one place that decides what a ``--load-weights`` path is: an otxlite ``.pth`` or an OpenVINO IR."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from otxlite.core.errors import OtxliteError


class ModelKind(str, Enum):
    """Kinds of model files otxlite loads."""

    PYTORCH = "weights.pth"
    OPENVINO = "openvino.xml"


def model_kind(path: Path, allowed: tuple[ModelKind, ...] = (ModelKind.PYTORCH, ModelKind.OPENVINO)) -> ModelKind:
    """Check that ``path`` exists and is one of ``allowed``; return its kind."""
    path = Path(path)
    if not path.is_file():
        raise OtxliteError(f"--load-weights {path}: the file does not exist. Give a trained model "
                           f"({' or '.join(kind.value for kind in allowed)}).")
    kinds = {".pth": ModelKind.PYTORCH, ".pt": ModelKind.PYTORCH, ".xml": ModelKind.OPENVINO}
    kind = kinds.get(path.suffix.lower())
    if kind is None or kind not in allowed:
        raise OtxliteError(f"--load-weights {path}: expected {' or '.join(k.value for k in allowed)}, "
                           f"got a '{path.suffix}' file.")
    if kind is ModelKind.OPENVINO and not path.with_suffix(".bin").is_file():
        raise OtxliteError(f"--load-weights {path}: the weights file {path.with_suffix('.bin')} is missing. "
                           "Keep the .xml and .bin of an exported model together.")
    return kind
