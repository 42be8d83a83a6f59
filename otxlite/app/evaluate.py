"""``otxlite eval``: COCO metrics of a trained model on a test dataset, written to ``performance.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otxlite.core.artifacts import is_tiled, model_labels_and_template
from otxlite.core.coco_metrics import performance_report
from otxlite.core.fileio import write_json_atomic
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.data.formats import DataOptions


def evaluate_ir(xml: Path | Any, ann_file: Path, report_dir: Path | None = None) -> tuple[dict[str, Any], float]:
    """COCO metrics of an IR (a file, or an ``openvino.Model`` in memory) on a prepared COCO file (OpenVINO only),
    and its confidence threshold; with ``report_dir``, the evaluation report (``otxlite.report.model_report``)."""
    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(xml, hint="THROUGHPUT")
    return evaluate_predictor(predictor, ann_file, report_dir=report_dir), predictor.metadata.confidence_threshold


def evaluate_predictor(predictor: Any, ann_file: Path, show_progress: bool = True,
                       report_dir: Path | None = None) -> dict[str, Any]:
    """COCO metrics of a compiled IR on the images of an otxlite COCO file (absolute image paths), and the
    evaluation report in ``report_dir`` if given."""
    import json

    from rich.progress import Progress

    from otxlite.core.console import console
    from otxlite.core.errors import OtxliteError
    from otxlite.core.coco_metrics import ImageDetections, encode_masks, evaluate_predictions
    from otxlite.core.images import read_image

    images = json.loads(Path(ann_file).read_text())["images"]
    results: list[ImageDetections] = []

    def readable() -> Any:
        for info in images:
            image = read_image(Path(info["file_name"]))
            if image is None:
                raise OtxliteError(f"The image {info['file_name']} cannot be decoded.")
            yield info["id"], image

    with Progress(console=console, disable=not show_progress, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(images))

        def on_result(image_id: int, prediction: Any) -> None:
            results.append(ImageDetections(image_id, prediction.boxes, prediction.scores, prediction.labels,
                                           encode_masks(prediction.masks)))
            progress.advance(task)

        predictor.predict_async(readable(), on_result)
    if report_dir is not None:
        from otxlite.report.model_report import evaluate_and_report

        return evaluate_and_report(ann_file, results, predictor.metadata.labels, report_dir,
                                   predictor.metadata.confidence_threshold)
    return evaluate_predictions(ann_file, results, predictor.metadata.labels)


def evaluate(load_weights: Path, test_root: Path, output: Path | None = None,
             data_options: DataOptions = DataOptions(), device: str = "auto") -> tuple[dict[str, Any], Path]:
    """Evaluate ``load_weights`` (weights.pth or openvino.xml) on ``test_root``; returns the report and
    the path of ``performance.json``. ``device`` is PyTorch's (an IR runs on OpenVINO's CPU plugin)."""
    from otxlite.data.prepare import convert_eval_data

    kind = model_kind(load_weights)
    if kind is ModelKind.PYTORCH:
        from otxlite.training.device import use_device

        use_device(device)
    labels, _ = model_labels_and_template(Path(load_weights))
    converted = convert_eval_data(Path(test_root), labels, data_options)  # a bad dataset stops here
    run_dir = run_folder(output, "eval")
    ann_file = converted.write(run_dir / "data").ann_file
    if kind is ModelKind.PYTORCH and is_tiled(Path(load_weights)):
        from otxlite.core.console import console

        console.print("The model was trained on tiles: each whole image is tiled and the tiles' detections "
                      "merged, as predict and serve do.")
    if kind is ModelKind.OPENVINO:
        metrics, threshold = evaluate_ir(Path(load_weights), ann_file, report_dir=run_dir / "report")
    else:
        from otxlite.training.evaluate import evaluate_weights

        metrics, threshold = evaluate_weights(Path(load_weights), ann_file, run_dir, report_dir=run_dir / "report")
    report = performance_report(metrics, threshold, Path(load_weights).name)
    return report, write_json_atomic(run_dir / "performance.json", report)
