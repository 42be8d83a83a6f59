"""``otxlite export``: an otxlite ``weights.pth`` -> ``openvino.xml`` + ``openvino.bin`` + ``label_schema.json``.

    weights.pth --mmdeploy torch2onnx--> end2end.onnx --openvino.convert_model--> normalisation,
    output names, rt_info --openvino.save_model--> OUT/openvino.{xml,bin}

See :mod:`otxlite.export.mmdeploy_onnx` for the traced graph and :mod:`otxlite.export.openvino_ir`
for the IR's input, outputs and metadata.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from otxlite.data.labels import SCHEMA_FILE, save_label_schema
from otxlite.core.artifacts import ModelMetadata, load_weights, weights_config, write_metadata
from otxlite.export.mmdeploy_onnx import export_onnx, model_spec
from otxlite.export.openvino_ir import convert_onnx
from otxlite.core.console import console
from otxlite.core.fileio import save_ir_atomic
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.core.tiling import TilingSettings
from otxlite.export.fp16_weights import compress_float_weights

IR_NAME = "openvino"


def export_openvino(weights: Path, output_dir: Path, half_precision: bool = False) -> Path:
    """Export ``weights`` to ``output_dir/openvino.xml`` (FP16 weights if ``half_precision``); return its path."""
    payload = load_weights(Path(weights))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    xml_path = output_dir / f"{IR_NAME}.xml"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=output_dir) as work:
        work_dir = Path(work)
        config = weights_config(payload)
        spec = model_spec(config)
        onnx_path = export_onnx(Path(weights), config, spec, work_dir)
        model = convert_onnx(onnx_path, spec)
        write_metadata(model, ModelMetadata(
            labels=payload["labels"], input_size=spec.input_size, confidence_threshold=payload["confidence_threshold"],
            mask_layout=spec.mask_layout, box_source=spec.box_source, mask_values=spec.mask_values,
            model_type=spec.model_type,
            iou_threshold=spec.iou_threshold,
            precision="FP16" if half_precision else "FP32", template_id=payload["template_id"],
            tiling=TilingSettings.from_dict(config.get("otxlite_tiling"))))
        if half_precision:
            compress_float_weights(model)
        save_ir_atomic(model, xml_path)
    save_label_schema(payload["labels"], output_dir / SCHEMA_FILE)
    return xml_path


def export(load_weights: Path, output: Path | None = None, half_precision: bool = False) -> Path:
    """``otxlite export``: a ``weights.pth`` into the run folder ``output``; returns the IR's path."""
    model_kind(load_weights, allowed=(ModelKind.PYTORCH,))
    return export_openvino(load_weights, run_folder(output, "export"), half_precision)


def openvino_model(load_weights: Path, run_dir: Path) -> Path:
    """The IR to run: ``load_weights`` itself, or an export of a ``weights.pth`` into ``run_dir/openvino``."""
    if model_kind(load_weights) is ModelKind.OPENVINO:
        return Path(load_weights)
    console.print(f"Exporting {load_weights} to OpenVINO first ({run_dir / 'openvino'})")
    return export_openvino(Path(load_weights), run_dir / "openvino")
