"""Binary masks -> polygons (one per connected part), simplified to a maximum number of points."""

from __future__ import annotations

import cv2
import numpy as np


def mask_to_polygons(mask: np.ndarray, max_points: int | None = None) -> list[np.ndarray]:
    """Outer contours of each connected part of ``mask`` as [K,2] float arrays (x, y) in pixels.

    With ``max_points``, each contour is simplified (Douglas-Peucker, growing tolerance) to at most that many points.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if max_points is not None and len(contour) > max_points:
            epsilon = 0.5
            while len(contour) > max_points:
                contour = cv2.approxPolyDP(contour, epsilon, closed=True)
                epsilon *= 1.5
        if len(contour) >= 3:
            polygons.append(contour.reshape(-1, 2).astype(np.float32))
    return polygons
