"""The AzureML AutoML instance-segmentation output schema (``predictions.json``, ``/score``)."""

from __future__ import annotations

from typing import Any

from otxlite.runtime.polygons import mask_to_polygons
from otxlite.runtime.predictor import Prediction


def to_azureml(filename: str, prediction: Prediction, labels: list[str], width: int, height: int,
               max_polygon_points: int | None = None) -> dict[str, Any]:
    """One image's entry: boxes and polygons normalized to [0, 1] by the image size."""
    boxes = []
    for box, score, label, mask in zip(prediction.boxes, prediction.scores, prediction.labels, prediction.masks):
        polygons = [
            [round(float(v), 4) for point in polygon for v in (point[0] / width, point[1] / height)]
            for polygon in mask_to_polygons(mask, max_polygon_points)
        ]
        boxes.append({
            "box": {"topX": round(float(box[0]) / width, 4), "topY": round(float(box[1]) / height, 4),
                    "bottomX": round(float(box[2]) / width, 4), "bottomY": round(float(box[3]) / height, 4)},
            "label": labels[int(label)],
            "score": round(float(score), 4),
            "polygon": polygons,
        })
    return {"filename": filename, "boxes": boxes}
