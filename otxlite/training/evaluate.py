"""Evaluating an otxlite ``weights.pth`` with mmengine's test loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otxlite.core.artifacts import load_weights
from otxlite.training.config import build_test_config
from otxlite.training.runner import build_runner
from otxlite.core.coco_metrics import metrics_from_flat


def evaluate_weights(weights: Path, ann_file: Path, run_dir: Path,
                     report_dir: Path | None = None) -> tuple[dict[str, Any], float]:
    """COCO metrics of ``weights`` on a prepared COCO file (``otxlite.data.prepare``), and the model's confidence
    threshold; with ``report_dir``, the evaluation report (``otxlite.report.model_report``)."""
    loaded = load_weights(weights)
    record = loaded.record
    cfg = build_test_config(loaded.mmengine_config(), record, ann_file, run_dir / "logs")
    cfg.load_from = str(weights)
    if report_dir is not None:
        cfg.test_evaluator.update(report_dir=str(report_dir), confidence_threshold=record.confidence_threshold)
    cfg.custom_hooks = [dict(type="ProgressHook")]
    runner = build_runner(cfg)
    flat = runner.test()
    return metrics_from_flat({key.removeprefix("coco/"): value for key, value in flat.items()}), \
        record.confidence_threshold
