"""Saliency maps of instance segmentation, as OTX explains Mask R-CNN: per class, the pixel-wise maximum of
score x mask over that class's detections (numpy and OpenCV only, so it runs beside the IR without torch)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np

from otxlite.core.fileio import atomic_path
from otxlite.core.images import write_image


def class_saliency(masks: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_classes: int,
                   shape: tuple[int, int]) -> np.ndarray:
    """[num_classes, H, W] uint8 (0-255) for an image of ``shape`` (H, W): for each class, max over its
    detections (masks [N, H, W]) of score x mask; zero where a class detected nothing."""
    maps = np.zeros((num_classes, *shape), np.float32)
    for mask, score, label in zip(masks, scores, labels):
        np.maximum(maps[int(label)], mask.astype(np.float32) * float(score), out=maps[int(label)])
    return np.round(maps * 255).astype(np.uint8)


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A BGR image with one class's saliency map (uint8 [H, W]) blended over it as a JET colour map."""
    heat = cv2.applyColorMap(saliency, cv2.COLORMAP_JET)
    return cv2.addWeighted(heat, alpha, image, 1 - alpha, 0)


def saliency_pngs(maps: np.ndarray, labels: list[str]) -> list[dict[str, str]]:
    """``[{label, png}]``: each class's map (uint8 [H, W]) as a base64 grayscale PNG, in label order."""
    return [{"label": label, "png": base64.b64encode(cv2.imencode(".png", saliency)[1].tobytes()).decode()}
            for label, saliency in zip(labels, maps)]


def save_saliency(folder: Path, stem: str, image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                  labels_found: np.ndarray, labels: list[str]) -> None:
    """Write ``<stem>.npy`` (every class) and ``<stem>_<class>.png`` (each class detected) into ``folder``."""
    maps = class_saliency(masks, scores, labels_found, len(labels), image.shape[:2])
    with atomic_path(folder / f"{stem}.npy") as tmp:
        np.save(tmp, maps)
    for index in np.unique(labels_found):
        safe = re.sub(r"[^\w.-]+", "_", labels[int(index)])
        with atomic_path(folder / f"{stem}_{safe}.png") as tmp:
            write_image(tmp, overlay(image, maps[int(index)]))
