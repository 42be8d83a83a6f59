"""``otxlite eval``: COCO metrics of a trained model on a test dataset, written to ``performance.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otxlite.evaluation import performance_report
from otxlite.fileio import write_json_atomic
from otxlite.model_files import ModelKind, model_kind
from otxlite.runs import run_folder


def evaluate(load_weights: Path, test_root: Path, output: Path | None = None,
             data_format: str | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate ``load_weights`` on ``test_root``; returns the report and the path of ``performance.json``."""
    model_kind(load_weights, allowed=(ModelKind.PYTORCH,))
    run_dir = run_folder(output, "eval")
    from otxlite.engine.evaluate import evaluate_weights

    metrics, threshold = evaluate_weights(Path(load_weights), Path(test_root), run_dir, data_format)
    report = performance_report(metrics, threshold, Path(load_weights).name)
    return report, write_json_atomic(run_dir / "performance.json", report)
