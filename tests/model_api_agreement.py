"""OpenVINO Model API against otxlite's own predictor on one image: the check every family's IR must pass."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
LARGE_MASK_PIXELS = 1000  # masks compared by IoU (smaller ones lose most of their IoU to one pixel of edge)
BOUNDARY = 0.02  # detections this close to the threshold may fall on either side (the two resize differently)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def check_model_api_agrees(xml: Path, image_file: Path, model_api_class: str) -> int:
    """Model API loads ``xml`` as the class registered as ``model_api_class`` (the IR's own ``model_type``) and finds what otxlite's
    predictor finds above the model's threshold: the same detections (labels, scores), and every mask over
    ``LARGE_MASK_PIXELS`` at IoU >= 0.9. Returns how many large masks were compared."""
    import openvino as ov
    from model_api.adapters import OpenvinoAdapter
    from model_api.models import Model

    from otxlite.runtime.predictor import Predictor

    image = cv2.imread(str(image_file))
    model = Model.create_model(OpenvinoAdapter(ov.Core(), str(xml), device="CPU", plugin_config=F32))
    assert model.__model__ == model_api_class, type(model).__name__
    theirs = model(image)
    predictor = Predictor(xml)
    threshold = predictor.metadata.confidence_threshold
    ours = predictor.predict(image, threshold)
    sure = ours.scores >= threshold + BOUNDARY
    assert sure.sum() > 0, "the model finds nothing: the check would prove nothing"
    labels = predictor.metadata.labels
    their_masks = theirs.masks.astype(bool)
    assert their_masks.shape[1:] == image.shape[:2]
    compared, unmatched = 0, list(range(len(theirs.scores)))
    for score, label, mask in zip(ours.scores[sure], ours.labels[sure], ours.masks[sure]):
        same = [j for j in unmatched if theirs.label_names[j] == labels[label]
                and abs(float(theirs.scores[j]) - float(score)) < BOUNDARY]
        assert same, f"Model API lacks the {labels[label]} detection scoring {score:.3f}"
        best = max(same, key=lambda j: mask_iou(mask, their_masks[j]))
        unmatched.remove(best)
        if mask.sum() >= LARGE_MASK_PIXELS:
            iou = mask_iou(mask, their_masks[best])
            assert iou >= 0.9, f"{labels[label]} ({score:.3f}): Model API's mask has IoU {iou:.3f} with otxlite's"
            compared += 1
    extra = [float(theirs.scores[j]) for j in unmatched if theirs.scores[j] >= threshold + BOUNDARY]
    assert not extra, f"Model API finds detections otxlite does not: scores {extra}"
    return compared
