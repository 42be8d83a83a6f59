"""``otxlite export``: an otxlite ``weights.pth`` -> an OpenVINO IR in the run folder (see
:mod:`otxlite.export.pipeline`); with ``package``, a deployment folder around it (:mod:`otxlite.export.package`)."""

from __future__ import annotations

from pathlib import Path

from otxlite.core.errors import OtxliteError
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.export.pipeline import export_openvino


def export(load_weights: Path, output: Path | None = None, half_precision: bool = False,
           package: bool = False) -> Path:
    """``otxlite export``: a ``weights.pth`` into the run folder ``output``; returns the IR's path. With ``package``,
    ``load_weights`` may also be an IR (e.g. the INT8 one from ``optimize``), copied into the folder."""
    from otxlite.core.artifacts import model_record
    from otxlite.export.package import write_deployment

    kind = model_kind(load_weights, allowed=(ModelKind.PYTORCH, ModelKind.OPENVINO) if package else
                      (ModelKind.PYTORCH,))
    if kind is ModelKind.OPENVINO and half_precision:
        raise OtxliteError(f"--half-precision converts a weights.pth; {load_weights} is an IR already. Leave it out "
                           "(or package the weights.pth with --half-precision).")
    run_dir = run_folder(output, "export")
    xml = Path(load_weights) if kind is ModelKind.OPENVINO else export_openvino(load_weights, run_dir, half_precision)
    if package:
        write_deployment(xml, model_record(xml), run_dir)
        xml = run_dir / "openvino.xml"
    return xml
