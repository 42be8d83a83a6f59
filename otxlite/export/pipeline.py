"""An otxlite ``weights.pth`` -> ``openvino.xml`` + ``openvino.bin`` + ``label_schema.json``.

    weights.pth --mmdeploy torch2onnx--> end2end.onnx --openvino.convert_model--> normalisation,
    output names, rt_info (the model record, unchanged) --openvino.save_model--> OUT/openvino.{xml,bin}

See :mod:`otxlite.export.mmdeploy_onnx` for the traced graph and :mod:`otxlite.export.openvino_ir`
for the IR's input, outputs and metadata.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from otxlite.core.artifacts import load_weights, write_metadata
from otxlite.core.console import console
from otxlite.core.fileio import save_ir_atomic
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.data.labels import SCHEMA_FILE, save_label_schema
from otxlite.export.fp16_weights import compress_float_weights
from otxlite.export.mmdeploy_onnx import export_onnx, model_spec
from otxlite.export.openvino_ir import convert_onnx

IR_NAME = "openvino"


def export_openvino(weights: Path, output_dir: Path, half_precision: bool = False) -> Path:
    """Export ``weights`` to ``output_dir/openvino.xml`` (FP16 weights if ``half_precision``); return its path."""
    loaded = load_weights(Path(weights))
    record = loaded.record
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    xml_path = output_dir / f"{IR_NAME}.xml"
    with tempfile.TemporaryDirectory(prefix=".export-", dir=output_dir) as work:
        config = loaded.mmengine_config()
        spec = model_spec(config, record)
        model = convert_onnx(export_onnx(Path(weights), config, spec, Path(work)), spec)
        write_metadata(model, replace(record, precision="FP16" if half_precision else "FP32"))
        if half_precision:
            compress_float_weights(model)
        save_ir_atomic(model, xml_path)
    save_label_schema(record.labels, output_dir / SCHEMA_FILE)
    return xml_path


def openvino_model(load_weights: Path, run_dir: Path) -> Path:
    """The IR to run: ``load_weights`` itself, or an export of a ``weights.pth`` into ``run_dir/openvino``."""
    if model_kind(load_weights) is ModelKind.OPENVINO:
        return Path(load_weights)
    console.print(f"Exporting {load_weights} to OpenVINO first ({run_dir / 'openvino'})")
    return export_openvino(Path(load_weights), run_dir / "openvino")
