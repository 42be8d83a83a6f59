"""``otxlite predict``: images -> ``predictions.jsonl`` (one AzureML entry a line, written as each image finishes),
``predictions.json`` for runs up to ``JSON_LIMIT`` images, ``errors.jsonl`` and optional overlays, with OpenVINO.

A run continues where a killed one stopped (same command, same ``-o``): images already in predictions.jsonl or
errors.jsonl are skipped. ``--shard I/N`` scores a stable 1/N of the images; ``--engine ray`` scores them on Ray Data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

from otxlite.core.console import console, err_console
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import atomic_path, remove_unfinished_writes, write_json_atomic
from otxlite.export.pipeline import openvino_model
from otxlite.core.model_files import model_kind
from otxlite.core.runs import run_folder, run_folder_lock
from otxlite.runtime.batch import JsonlLog, OnLine, Shard
from otxlite.runtime.images import InputImage

PREDICTIONS_FILE = "predictions.jsonl"
ERRORS_FILE = "errors.jsonl"
SETTINGS_FILE = "predict_settings.json"  # what the lines were made with: a resumed run must make them the same way
JSON_LIMIT = 10_000  # predictions.json (one array, built in memory at the end) for runs up to this many images
OVERLAY_LIMIT = 300  # overlays are drawn by default for runs up to this many images (about 0.9 s each at 1 MP)
ENGINES = ("process", "ray")
PREDICTION, ERROR = "prediction", "error"  # the two kinds of line a scorer gives
UNREADABLE = "cannot be read or decoded (missing, empty, cut short or not an image)"


@dataclass
class PredictResult:
    """What ``predict`` wrote and how much it found (``images``, ``detections``: this run's, not a resumed one's)."""

    predictions: Path  # predictions.jsonl
    predictions_json: Path | None  # predictions.json, for runs up to JSON_LIMIT images
    overlays: Path | None
    images: int
    detections: int
    resumed: int  # images already in the output from an earlier run of the same command, not scored again
    skipped: list[Path]  # files whose names are not images' (an annotation file beside the photos)
    unreadable: int  # image files that could not be read or decoded in this run: listed in errors.jsonl
    errors: Path | None


class ImageScorer:
    """Images -> one JSON line each: a readable image's AzureML entry (its overlay and saliency maps written on the
    way), an unreadable one's error. The per-image work of both engines, one compiled model per scorer."""

    def __init__(self, xml: Path, run_dir: Path, threshold: float | None, max_polygon_points: int | None,
                 overlays: bool, explain: bool, threads: int = 0) -> None:
        from otxlite.runtime.predictor import Predictor
        from otxlite.runtime.thresholds import detection_thresholds

        self.predictor = Predictor(xml, hint="THROUGHPUT", threads=threads)
        self.labels = self.predictor.metadata.labels
        self.thresholds = detection_thresholds(self.predictor.metadata.confidence_threshold, threshold, explain)
        self.max_polygon_points = max_polygon_points
        self.overlays = run_dir / "overlays" if overlays else None
        self.saliency = run_dir / "saliency" if explain else None
        for folder in (self.overlays, self.saliency):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)

    def score(self, images: Iterable[InputImage], on_line: OnLine) -> None:
        """``on_line(name, kind, line, detections)`` for every image: ``PREDICTION``, its entry (in input order) and
        how many detections it holds, or ``ERROR``, ``{"file", "path", "error"}`` and 0 as soon as the image fails to
        decode."""
        from otxlite.core.images import read_image

        def readable() -> Iterator[tuple[tuple[str, Any], Any]]:
            for image in images:
                pixels = read_image(image.path)
                if pixels is None:
                    on_line(image.name, ERROR, json.dumps({"file": image.name, "path": str(image.path),
                                                           "error": UNREADABLE}), 0)
                    continue
                yield (image.name, pixels), pixels

        def on_result(key: tuple[str, Any], prediction: Any) -> None:
            name, pixels = key
            entry = self._entry(name, pixels, prediction)
            on_line(name, PREDICTION, json.dumps(entry), len(entry["boxes"]))

        self.predictor.predict_async(readable(), on_result, self.thresholds.decode)

    def _entry(self, name: str, image: Any, prediction: Any) -> dict[str, Any]:
        """The AzureML entry of one image; its saliency maps and overlay written when asked for."""
        from otxlite.runtime.saliency import save_saliency
        from otxlite.core.images import write_image
        from otxlite.report.visualize import draw_instances
        from otxlite.runtime.schema import to_azureml

        stem = name.replace("/", "__").rsplit(".", 1)[0]
        if self.saliency is not None:  # saliency from every detection, then only the kept ones go on
            save_saliency(self.saliency, stem, image, prediction.masks, prediction.scores, prediction.labels,
                          self.labels)
            prediction = prediction.at_least(self.thresholds.keep)
        height, width = image.shape[:2]
        if self.overlays is not None:
            overlay = draw_instances(image, list(prediction.masks), prediction.boxes, prediction.labels.tolist(),
                                     [self.labels[i] for i in prediction.labels], prediction.scores)
            with atomic_path(self.overlays / f"{stem}.png") as tmp:
                write_image(tmp, overlay)
        return to_azureml(name, prediction, self.labels, width, height, self.max_polygon_points)


class _Outputs:
    """The driver's side of a run: every scorer's lines go through here into the resumable files, counted."""

    def __init__(self, run_dir: Path, max_errors: int | None) -> None:
        self.predictions = JsonlLog(run_dir / PREDICTIONS_FILE, "filename")
        self.errors = JsonlLog(run_dir / ERRORS_FILE, "file")
        self.max_errors = max_errors
        self.scored = self.detections = self.unreadable = 0
        self.advance: Any = lambda: None

    def done(self) -> set[str]:
        """Names already written by an earlier run into this folder."""
        return self.predictions.keys | self.errors.keys

    def on_line(self, name: str, kind: str, line: str, detections: int) -> None:
        """Write one image's line (once: a repeated name is dropped); stop past ``--max-errors``. The line is not
        parsed here: with Ray, this process collects every worker's lines."""
        if kind == PREDICTION:
            if self.predictions.append(name, line):
                self.scored += 1
                self.detections += detections
        elif self.errors.append(name, line):
            self.unreadable += 1
            err_console.print(f"[yellow]Warning:[/] skipping {json.loads(line)['path']}: {UNREADABLE}.")
            failed = len(self.errors.keys)
            if self.max_errors is not None and failed > self.max_errors:
                raise OtxliteError(
                    f"{failed} images could not be read, more than --max-errors {self.max_errors}: stopped (the last: "
                    f"{name}). Every image scored so far is in {self.predictions.path}, each unreadable one in "
                    f"{self.errors.path}. Fix or remove those files, or raise --max-errors, and run the same command "
                    "again: it continues where this run stopped.")
        self.advance()

    def close(self) -> None:
        self.predictions.close()
        self.errors.close()


def predict(load_weights: Path, source: str, output: Path | None = None, confidence_threshold: float | None = None,
            max_polygon_points: int | None = None, explain: bool = False, overlays: bool | None = None,
            shard: str | None = None, max_errors: int | None = None, engine: str = "process",
            workers: int | None = None, threads: int | None = None, ray_address: str | None = None) -> PredictResult:
    """Predict every image of ``source`` (an image, a folder, a glob or ``@list.txt``), streaming one line per image
    into ``predictions.jsonl``; with ``explain``, also write saliency maps (as ``otxlite explain``: from every
    detection) into ``saliency/``. ``overlays``: draw them (``None``: for runs up to ``OVERLAY_LIMIT`` images)."""
    from rich.progress import Progress

    from otxlite.runtime.images import named_inputs
    from otxlite.runtime.predictor import read_ir

    _check_options(engine, workers, threads, ray_address, max_errors)
    part = Shard.parse(shard) if shard is not None else None
    model_kind(load_weights)  # a missing or cut-short model is refused before the run folder is made
    run_dir = run_folder(output, "predict")
    with run_folder_lock(run_dir, "predict"):
        xml = openvino_model(load_weights, run_dir)
        read_ir(xml)  # an IR without otxlite's metadata is refused here, before any image is read or Ray started
        images, not_images = named_inputs(source)
        for path in not_images:
            err_console.print(f"[yellow]Note:[/] skipping {path}: not an image file (by its name).")
        if part is not None:
            images = part.select(images)
        if overlays is None:
            overlays = len(images) <= OVERLAY_LIMIT
            if not overlays:
                err_console.print(f"[yellow]Note:[/] no overlays: this run has {len(images):,} images, over "
                                  f"{OVERLAY_LIMIT}; --overlays draws them anyway (it slows scoring several times).")
        for folder in ("overlays", "saliency"):  # the images in flight when an earlier run was killed
            remove_unfinished_writes(run_dir / folder)
        outputs = _Outputs(run_dir, max_errors)
        done = outputs.done()
        _check_settings(run_dir, {"model": str(Path(load_weights).resolve()), "shard": shard, "explain": explain,
                                  "confidence_threshold": confidence_threshold, "max_polygon_points": max_polygon_points},
                        bool(done))
        try:
            todo = [image for image in images if image.name not in done]
            if done:
                console.print(f"Resuming: {len(images) - len(todo):,} of {len(images):,} images are already in "
                              f"{run_dir}; scoring the other {len(todo):,}.")
            make_scorer = partial(ImageScorer, xml, run_dir, confidence_threshold, max_polygon_points, overlays,
                                  explain)
            with Progress(console=console) as progress:
                task = progress.add_task("predicting", total=len(todo))
                outputs.advance = lambda: progress.advance(task)
                if engine == "ray":
                    from otxlite.runtime.ray_engine import score_on_ray

                    used = score_on_ray(todo, make_scorer, outputs.on_line, workers, threads, ray_address)
                    console.print(f"Scored on Ray: {used[0]} workers x {used[1]} OpenVINO threads.")
                else:
                    make_scorer(threads=threads or 0).score(todo, outputs.on_line)
        finally:
            outputs.close()
        as_json = _write_json(run_dir, images) if len(images) <= JSON_LIMIT else None
        if as_json is None:
            console.print(f"{len(images):,} images: the predictions are in {PREDICTIONS_FILE} alone (predictions.json "
                          f"is written for runs up to {JSON_LIMIT:,} images).")
        errors = run_dir / ERRORS_FILE
        return PredictResult(outputs.predictions.path, as_json, run_dir / "overlays" if overlays else None,
                             outputs.scored, outputs.detections, len(images) - len(todo), not_images,
                             outputs.unreadable, errors if errors.exists() else None)


def _check_options(engine: str, workers: int | None, threads: int | None, ray_address: str | None,
                   max_errors: int | None) -> None:
    """Refuse options that do not go together, before anything is read."""
    if engine not in ENGINES:
        raise OtxliteError(f"--engine {engine}: choose {' or '.join(ENGINES)}.")
    if engine != "ray" and (workers is not None or ray_address is not None):
        raise OtxliteError("--workers and --ray-address are for --engine ray. Without Ray, split the images over "
                           "processes or machines with --shard I/N, one command each.")
    for option, value, least in (("--max-errors", max_errors, 0), ("--workers", workers, 1), ("--threads", threads, 1)):
        if value is not None and value < least:
            raise OtxliteError(f"{option} {value}: give a whole number of at least {least}.")


def _check_settings(run_dir: Path, settings: dict[str, Any], resuming: bool) -> None:
    """Record what this run's lines are made with; refuse to resume a folder whose lines were made otherwise."""
    path = run_dir / SETTINGS_FILE
    if resuming and path.is_file():
        before = json.loads(path.read_text())
        changed = {key: (before.get(key), value) for key, value in settings.items() if before.get(key) != value}
        if changed:
            said = "; ".join(f"{key} {old} before, {new} now" for key, (old, new) in changed.items())
            raise OtxliteError(f"{run_dir} holds predictions of an earlier run made with other settings ({said}): "
                               "resuming would mix the two in one file. Rerun with that run's options, or write this "
                               "one elsewhere with -o.")
    write_json_atomic(path, settings)


def _write_json(run_dir: Path, images: list[InputImage]) -> Path:
    """predictions.json: every entry of predictions.jsonl in one array, in the order of the inputs."""
    order = {image.name: index for index, image in enumerate(images)}
    lines = run_dir / PREDICTIONS_FILE
    with lines.open() if lines.exists() else open(os.devnull) as stream:  # no file: every image was unreadable
        entries = [json.loads(line) for line in stream]
    entries.sort(key=lambda entry: order.get(entry["filename"], len(order)))
    return write_json_atomic(run_dir / "predictions.json", entries)
