"""mmengine metric that feeds MMDetection predictions to otxlite's numpy evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from pycocotools import mask as mask_utils

from otxlite.core.coco_metrics import ImageDetections, encode_masks, evaluate_predictions


def to_image_detections(image_id: int, pred_instances: dict[str, Any]) -> ImageDetections:
    """MMDetection ``pred_instances`` (original image size, as a dict) -> :class:`ImageDetections`."""
    masks = pred_instances["masks"].cpu().numpy().astype(bool)
    rles = encode_masks(masks)
    boxes = pred_instances["bboxes"].cpu().numpy().astype(np.float32)
    if len(boxes) and not boxes.any():  # SOLOv2 predicts masks only: boxes come from the masks
        xywh = mask_utils.toBbox(rles)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    return ImageDetections(
        image_id=int(image_id),
        boxes=boxes.reshape(-1, 4),
        scores=pred_instances["scores"].cpu().numpy().astype(np.float32),
        labels=pred_instances["labels"].cpu().numpy().astype(np.int64),
        masks=rles,
    )


@METRICS.register_module()
class InstanceSegMetric(BaseMetric):
    """COCO bbox/mask mAP, per-class mask mAP and F-measure; keys are prefixed with ``coco/``."""

    default_prefix = "coco"

    def __init__(self, ann_file: str, labels: Sequence[str], report_dir: str | None = None,
                 confidence_threshold: float | None = None, report_kept_only: bool = False, **kwargs: Any) -> None:
        """``report_dir``: also write the evaluation report there, at ``confidence_threshold`` (``None``: the
        best F-measure's); ``report_kept_only``: only when the mask mAP is the best so far (ties: the later),
        the rule by which training keeps weights.pth, so the report describes the saved model."""
        super().__init__(**kwargs)
        self.ann_file = Path(ann_file)
        self.labels = list(labels)
        self.report_dir = Path(report_dir) if report_dir else None
        self.confidence_threshold = confidence_threshold
        self.report_kept_only = report_kept_only
        self.best = -1.0

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Encode each prediction's masks as RLE right away, to keep memory small."""
        for sample in data_samples:
            self.results.append(to_image_detections(sample["img_id"], sample["pred_instances"]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Evaluate all predictions; per-class mask mAP keys are ``mask_mAP/<label>``."""
        if self.report_dir is not None:
            from otxlite.report.model_report import evaluate_and_report

            metrics = evaluate_and_report(self.ann_file, results, self.labels, self.report_dir,
                                          self.confidence_threshold, self.best if self.report_kept_only else -1.0)
            self.best = max(self.best, metrics["mask_mAP"])
        else:
            metrics = evaluate_predictions(self.ann_file, results, self.labels)
        per_class = metrics.pop("per_class")
        for label, values in per_class.items():
            metrics[f"mask_mAP/{label}"] = values["mask_mAP"]
        return metrics
