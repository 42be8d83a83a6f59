"""COCO metrics and OTX's F-measure for instance segmentation, from predictions in plain numpy.

Shared by training-time validation (PyTorch) and IR evaluation (OpenVINO): it imports neither.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.025), 3)


@dataclass
class ImageDetections:
    """Detections of one image in original pixels: boxes [N,4] xyxy, scores [N], labels [N] (0-based), RLE masks."""

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: list[dict[str, Any]]


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Binary masks [N,H,W] -> COCO RLEs with string counts."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(np.transpose(masks.astype(np.uint8), (1, 2, 0))))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _to_coco_results(predictions: list[ImageDetections]) -> list[dict[str, Any]]:
    results = []
    for pred in predictions:
        for box, score, label, rle in zip(pred.boxes, pred.scores, pred.labels, pred.masks):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append({"image_id": pred.image_id, "category_id": int(label) + 1, "score": float(score),
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
    return results


def _coco_eval(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> COCOeval | None:
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _per_class_ap(evaluator: COCOeval | None, gt: COCO) -> dict[int, float]:
    """Mean precision over IoU 0.5:0.95 for each category id (all areas, 100 detections)."""
    if evaluator is None:
        return {cat_id: 0.0 for cat_id in gt.getCatIds()}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    result = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        result[cat_id] = float(values.mean()) if values.size else 0.0
    return result


def mask_matches(gt: COCO, predictions: list[ImageDetections]) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy mask matching at IoU >= 0.5 within each class, highest score first (OTX's F-measure rule).

    Returns the score and true-positive flag of every prediction, and the number of ground-truth instances.
    Detections on crowd regions are neither true nor false positives (left out)."""
    scores_all, tp_all = [], []
    num_gt = 0
    for pred in predictions:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[pred.image_id]))
        for label in set(int(a["category_id"]) for a in anns) | set(int(v) + 1 for v in pred.labels):
            gts = [a for a in anns if a["category_id"] == label]
            real = [gt.annToRLE(a) for a in gts if not a.get("iscrowd")]
            crowd = [gt.annToRLE(a) for a in gts if a.get("iscrowd")]
            num_gt += len(real)
            index = [i for i, v in enumerate(pred.labels) if int(v) + 1 == label]
            index.sort(key=lambda i: -pred.scores[i])
            dts = [pred.masks[i] for i in index]
            ious = mask_utils.iou(dts, real, [0] * len(real)) if dts and real else np.zeros((len(dts), 0))
            on_crowd = (mask_utils.iou(dts, crowd, [1] * len(crowd)).max(axis=1) >= 0.5) if dts and crowd \
                else np.zeros(len(dts), bool)
            taken = np.zeros(len(real), bool)
            for row, i in enumerate(index):
                candidates = np.where(~taken & (ious[row] >= 0.5))[0] if len(real) else []
                if len(candidates):
                    taken[candidates[np.argmax(ious[row][candidates])]] = True
                    tp_all.append(True)
                elif on_crowd[row]:
                    continue
                else:
                    tp_all.append(False)
                scores_all.append(float(pred.scores[i]))
    return np.asarray(scores_all, np.float64), np.asarray(tp_all, bool), num_gt


def f1_curve(scores: np.ndarray, true_positive: np.ndarray, num_gt: int) -> np.ndarray:
    """F1 at each of ``THRESHOLDS`` (keep detections scoring at least the threshold)."""
    curve = []
    for threshold in THRESHOLDS:
        keep = scores >= threshold
        true_pos = int((true_positive & keep).sum())
        denominator = 2 * true_pos + int((~true_positive & keep).sum()) + (num_gt - true_pos)
        curve.append(2 * true_pos / denominator if denominator else 0.0)
    return np.asarray(curve)


def best_f_measure(gt: COCO, predictions: list[ImageDetections]) -> tuple[float, float]:
    """OTX's F-measure: the best F1 over confidence thresholds (the lowest threshold among ties).

    Returns (f_measure, threshold)."""
    curve = f1_curve(*mask_matches(gt, predictions))
    best = int(np.argmax(curve > curve.max() - 1e-9))
    return float(curve[best]), float(THRESHOLDS[best])


@dataclass
class CocoEvaluation:
    """COCO's own evaluators of one set of predictions (``None`` where there is no prediction at all)."""

    gt: COCO
    segm: COCOeval | None
    bbox: COCOeval | None


def coco_evaluation(ann_file: Path, predictions: list[ImageDetections]) -> CocoEvaluation:
    """Run COCOeval for masks and boxes."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    results = _to_coco_results(predictions)
    return CocoEvaluation(gt, _coco_eval(gt, results, "segm"), _coco_eval(gt, results, "bbox"))


def evaluate_predictions(ann_file: Path, predictions: list[ImageDetections], labels: list[str],
                         evaluation: CocoEvaluation | None = None) -> dict[str, Any]:
    """COCO bbox/mask mAP, mAP@50, per-class mask mAP and the best F-measure with its threshold
    (``evaluation``: COCOeval already run on these predictions)."""
    evaluation = evaluation or coco_evaluation(ann_file, predictions)
    gt, segm, bbox = evaluation.gt, evaluation.segm, evaluation.bbox
    f_measure, threshold = best_f_measure(gt, predictions)
    per_class = _per_class_ap(segm, gt)
    return {
        "mask_mAP": max(float(segm.stats[0]), 0.0) if segm else 0.0,
        "mask_mAP_50": max(float(segm.stats[1]), 0.0) if segm else 0.0,
        "bbox_mAP": max(float(bbox.stats[0]), 0.0) if bbox else 0.0,
        "bbox_mAP_50": max(float(bbox.stats[1]), 0.0) if bbox else 0.0,
        "f_measure": f_measure,
        "best_confidence_threshold": threshold,
        "num_images": len(gt.getImgIds()),
        "per_class": {labels[cat_id - 1]: {"mask_mAP": max(ap, 0.0)} for cat_id, ap in per_class.items()},
    }


def performance_report(metrics: dict[str, Any], confidence_threshold: float, model: str) -> dict[str, Any]:
    """``performance.json`` content (see the README's Evaluation section) from :func:`evaluate_predictions` output."""
    keys = ("mask_mAP", "mask_mAP_50", "bbox_mAP", "bbox_mAP_50", "f_measure")
    report: dict[str, Any] = {key: round(float(metrics[key]), 5) for key in keys}
    report.update(confidence_threshold=round(float(confidence_threshold), 4), num_images=int(metrics["num_images"]),
                  model=model, per_class={label: {"mask_mAP": round(float(v["mask_mAP"]), 5)}
                                          for label, v in metrics["per_class"].items()})
    return report


def metrics_from_flat(flat: dict[str, float]) -> dict[str, Any]:
    """Rebuild :func:`evaluate_predictions` output from mmengine's flat ``mask_mAP/<label>`` keys."""
    metrics: dict[str, Any] = {key: value for key, value in flat.items() if "/" not in key}
    metrics["per_class"] = {key.split("/", 1)[1]: {"mask_mAP": value}
                            for key, value in flat.items() if key.startswith("mask_mAP/")}
    return metrics
