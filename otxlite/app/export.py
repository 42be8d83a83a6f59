"""``otxlite export``: an otxlite ``weights.pth`` -> an OpenVINO IR in the run folder (see
:mod:`otxlite.export.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.export.pipeline import export_openvino


def export(load_weights: Path, output: Path | None = None, half_precision: bool = False) -> Path:
    """``otxlite export``: a ``weights.pth`` into the run folder ``output``; returns the IR's path."""
    model_kind(load_weights, allowed=(ModelKind.PYTORCH,))
    return export_openvino(load_weights, run_folder(output, "export"), half_precision)
