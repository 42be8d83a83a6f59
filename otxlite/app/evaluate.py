"""``otxlite eval``: COCO metrics of a trained model on a test dataset, written to ``performance.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otxlite.core.artifacts import model_record
from otxlite.core.coco_metrics import performance_report
from otxlite.core.fileio import write_json_atomic
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.data.formats import DataOptions


def evaluate(load_weights: Path, test_root: Path, output: Path | None = None,
             data_options: DataOptions = DataOptions(), device: str = "auto") -> tuple[dict[str, Any], Path]:
    """Evaluate ``load_weights`` (weights.pth or openvino.xml) on ``test_root``; returns the report and
    the path of ``performance.json``. ``device`` is PyTorch's (an IR runs on OpenVINO's CPU plugin)."""
    from otxlite.data.prepare import convert_eval_data

    kind = model_kind(load_weights)
    if kind is ModelKind.PYTORCH:
        from otxlite.training.device import use_device

        use_device(device)
    record = model_record(Path(load_weights))
    converted = convert_eval_data(Path(test_root), record.labels, data_options)  # a bad dataset stops here
    run_dir = run_folder(output, "eval")
    ann_file = converted.write(run_dir / "data").ann_file
    if kind is ModelKind.PYTORCH and record.tiling is not None:
        from otxlite.core.console import console

        console.print("The model was trained on tiles: each whole image is tiled and the tiles' detections "
                      "merged, as predict and serve do.")
    if kind is ModelKind.OPENVINO:
        from otxlite.runtime.evaluation import evaluate_ir

        metrics, threshold = evaluate_ir(Path(load_weights), ann_file, report_dir=run_dir / "report")
    else:
        from otxlite.training.evaluate import evaluate_weights

        metrics, threshold = evaluate_weights(Path(load_weights), ann_file, run_dir, report_dir=run_dir / "report")
    report = performance_report(metrics, threshold, Path(load_weights).name)
    return report, write_json_atomic(run_dir / "performance.json", report)
