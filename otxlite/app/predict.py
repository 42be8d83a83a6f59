"""``otxlite predict``: images -> ``predictions.json`` (AzureML schema) and overlay images, with OpenVINO."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from otxlite.core.console import console, err_console
from otxlite.core.fileio import atomic_path, write_json_atomic, write_text_atomic
from otxlite.export.pipeline import openvino_model
from otxlite.core.model_files import model_kind
from otxlite.core.runs import run_folder, run_folder_lock


ERRORS_FILE = "errors.jsonl"


@dataclass
class PredictResult:
    """What ``predict`` wrote and how much it found."""

    predictions: Path
    overlays: Path
    images: int
    detections: int
    skipped: list[Path]  # files whose names are not images' (an annotation file beside the photos)
    unreadable: list[Path]  # image files that could not be decoded: listed in errors.jsonl
    errors: Path | None


def _display_name(path: Path, source: Path) -> str:
    return str(path.relative_to(source)) if source.is_dir() else path.name


def predict(load_weights: Path, source: str, output: Path | None = None, confidence_threshold: float | None = None,
            max_polygon_points: int | None = None, explain: bool = False) -> PredictResult:
    """Predict every image of ``source`` (an image, a folder or a glob) with OpenVINO's async queue; with
    ``explain``, also write saliency maps (as ``otxlite explain``: from every detection) into ``saliency/``."""
    from rich.progress import Progress

    from otxlite.core.images import read_image, write_image
    from otxlite.runtime.images import list_inputs
    from otxlite.runtime.predictor import Prediction, Predictor
    from otxlite.runtime.saliency import save_saliency
    from otxlite.runtime.schema import to_azureml
    from otxlite.report.visualize import draw_instances

    model_kind(load_weights)  # a missing or cut-short model is refused before the run folder is made
    run_dir = run_folder(output, "predict")
    with run_folder_lock(run_dir, "predict"):
        predictor = Predictor(openvino_model(load_weights, run_dir), hint="THROUGHPUT")
        labels = predictor.metadata.labels
        threshold = predictor.metadata.confidence_threshold if confidence_threshold is None else confidence_threshold
        images, not_images = list_inputs(source)
        for path in not_images:
            err_console.print(f"[yellow]Note:[/] skipping {path}: not an image file (by its name).")
        failures: list[tuple[Path, str]] = []
        overlays = run_dir / "overlays"
        overlays.mkdir(parents=True, exist_ok=True)
        if explain:
            (run_dir / "saliency").mkdir(exist_ok=True)
        entries: dict[int, dict[str, Any]] = {}
        base = Path(source)

        with Progress(console=console) as progress:
            task = progress.add_task("predicting", total=len(images))

            def readable() -> Iterator[tuple[Any, Any]]:
                for index, path in enumerate(images):
                    image = read_image(path)
                    if image is None:
                        reason = "cannot be decoded (empty, cut short or not an image)"
                        err_console.print(f"[yellow]Warning:[/] skipping {path}: {reason}.")
                        failures.append((path, reason))
                        progress.advance(task)
                        continue
                    yield (index, path, image), image

            def on_result(key: tuple[int, Path, Any], prediction: Prediction) -> None:
                index, path, image = key
                name = _display_name(path, base)
                stem = name.replace("/", "__").rsplit(".", 1)[0]
                if explain:  # saliency from every detection, then only the kept ones go on
                    save_saliency(run_dir / "saliency", stem, image, prediction.masks, prediction.scores,
                                  prediction.labels, labels)
                    prediction = prediction.at_least(threshold)
                height, width = image.shape[:2]
                entry = to_azureml(name, prediction, labels, width, height, max_polygon_points)
                overlay = draw_instances(image, list(prediction.masks), prediction.boxes, prediction.labels.tolist(),
                                         [labels[i] for i in prediction.labels], prediction.scores)
                with atomic_path(overlays / f"{stem}.png") as tmp:
                    write_image(tmp, overlay)
                entries[index] = entry
                progress.advance(task)

            predictor.predict_async(readable(), on_result, None if explain else threshold)
        ordered = [entries[i] for i in sorted(entries)]
        predictions = write_json_atomic(run_dir / "predictions.json", ordered)
        errors = run_dir / ERRORS_FILE
        if failures:  # one JSON object per line: the image file and why it was not scored
            write_text_atomic(errors, "".join(json.dumps({"file": str(path), "error": reason}) + "\n"
                                              for path, reason in failures))
        return PredictResult(predictions, overlays, len(ordered), sum(len(e["boxes"]) for e in ordered),
                             not_images, [path for path, _ in failures], errors if failures else None)
