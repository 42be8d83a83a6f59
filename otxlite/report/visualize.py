"""Drawing instance masks, boxes and labels on images (numpy + OpenCV only, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

PALETTE = np.array([(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
                    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
                    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203)],
                   dtype=np.uint8)


def color_of(label_index: int) -> tuple[int, int, int]:
    """A stable BGR colour for a label index."""
    return tuple(int(c) for c in PALETTE[label_index % len(PALETTE)])


def draw_instances(image: np.ndarray, masks: list[np.ndarray], boxes: np.ndarray, label_indices: list[int],
                   names: list[str], scores: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """Return a BGR copy of ``image`` with translucent masks, outlines, boxes and 'label score' tags (just
    'label' when ``scores`` is None, e.g. for ground truth)."""
    canvas = image.copy()
    overlay = image.copy()
    for mask, label in zip(masks, label_indices):
        overlay[mask.astype(bool)] = color_of(label)
    canvas = cv2.addWeighted(overlay, alpha, canvas, 1 - alpha, 0)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for mask, box, label, name, score in zip(masks, boxes, label_indices, names,
                                             [None] * len(names) if scores is None else scores):
        color = color_of(label)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, color, thickness)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        text = name if score is None else f"{name} {score:.2f}"
        scale = max(0.35, thickness * 0.4)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(y0, th + base)
        cv2.rectangle(canvas, (x0, ty - th - base), (x0 + tw, ty), color, -1)
        cv2.putText(canvas, text, (x0, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
