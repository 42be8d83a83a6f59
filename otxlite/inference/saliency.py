"""Saliency maps of instance segmentation, as OTX explains Mask R-CNN: per class, the pixel-wise maximum of
score x mask over that class's detections (numpy and OpenCV only, so it runs beside the IR without torch)."""

from __future__ import annotations

import cv2
import numpy as np


def class_saliency(masks: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[num_classes, H, W] uint8 (0-255): for each class, max over its detections of score x mask."""
    height, width = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    maps = np.zeros((num_classes, height, width), np.float32)
    for mask, score, label in zip(masks, scores, labels):
        np.maximum(maps[int(label)], mask.astype(np.float32) * float(score), out=maps[int(label)])
    return np.round(maps * 255).astype(np.uint8)


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A BGR image with one class's saliency map (uint8 [H, W]) blended over it as a JET colour map."""
    heat = cv2.applyColorMap(saliency, cv2.COLORMAP_JET)
    return cv2.addWeighted(heat, alpha, image, 1 - alpha, 0)
