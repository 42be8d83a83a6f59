"""COCO metrics of an OpenVINO IR on a prepared COCO file, through the runtime's predictor (``otxlite eval`` of
an IR, the INT8 accuracy control and ``benchmark``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
