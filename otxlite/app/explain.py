"""``otxlite explain``: one saliency map per class per image (OTX's explanation of instance segmentation:
score x mask, the maximum per class), from an IR with OpenVINO alone or from a ``weights.pth`` with PyTorch.

    OUT/saliency/<image>.npy          uint8 [classes, H, W], 0-255, in the image's own pixels
    OUT/saliency/<image>_<class>.png  the map of each class that detected anything, over the image
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from otxlite.core.console import console, err_console
from otxlite.core.images import read_image
from otxlite.runtime.images import list_inputs
from otxlite.runtime.saliency import save_saliency
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder


@dataclass
class ExplainResult:
    """Where ``explain`` wrote its maps, for how many images."""

    folder: Path
    images: int
    skipped: list[Path]


def ir_detector(xml: Path) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]], list[str]]:
    """BGR image -> (masks, scores, labels) of every detection of an IR; and its labels."""
    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(xml)

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = predictor.predict(image)
        return found.masks, found.scores, found.labels

    return detect, predictor.metadata.labels


def explain(load_weights: Path, source: str, output: Path | None = None) -> ExplainResult:
    """Saliency maps of every image of ``source`` (an image, a folder or a glob)."""
    from rich.progress import Progress

    if model_kind(load_weights) is ModelKind.OPENVINO:
        detect, labels = ir_detector(Path(load_weights))
    else:
        from otxlite.core.artifacts import load_weights as read_weights
        from otxlite.training.inference import pytorch_detector

        detect, labels = pytorch_detector(Path(load_weights)), read_weights(Path(load_weights)).record.labels
    images, skipped = list_inputs(source)
    folder = run_folder(output, "explain") / "saliency"
    folder.mkdir(parents=True, exist_ok=True)
    done = 0
    with Progress(console=console) as progress:
        task = progress.add_task("explaining", total=len(images))
        for path in images:
            image = read_image(path)
            progress.advance(task)
            if image is None:
                err_console.print(f"[yellow]Warning:[/] skipping {path}: the file cannot be decoded as an image.")
                skipped.append(path)
                continue
            save_saliency(folder, path.stem, image, *detect(image), labels)
            done += 1
    return ExplainResult(folder, done, skipped)
