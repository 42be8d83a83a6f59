"""What a model gets right and wrong on a labelled set: the evaluation report that ``otxlite eval`` writes
(and ``otxlite train``, for the validation whose model it keeps; ``otxlite optimize``, for the INT8 model).

    report/
      report.html            everything below on one page, with the metrics and per-class tables
      report.json            the numbers behind every plot
      mask_pr_curve.png      precision-recall per class at mask IoU 0.5 (COCOeval's 101 recall points)
      box_pr_curve.png       the same for boxes
      f1_curve.png           F1 against the confidence threshold, the model's threshold marked
      confusion_matrix.png   true class (rows) x predicted class (columns), background included
      ap_by_size.png         mask and box mAP of small (< 32^2 px), medium and large objects
      error_breakdown.png    mask AP if each kind of error were forgiven (COCO's analysis, below)
      worst/NN_<image>.png   the images with the most errors: ground truth left, predictions right

The confusion matrix and the worst images use the detections kept at the model's confidence threshold,
matched to ground truth by mask IoU >= 0.5 regardless of class (highest score first); crowd regions are
left out. Everything else uses all detections, as COCO mAP does.

The error breakdown follows COCO's analyze() (Hoiem et al.), on masks, averaged over classes: C75 and C50 are
AP at IoU 0.75 and 0.5; Loc at IoU 0.1 (poor localisation forgiven); Oth at IoU 0.1 with classes ignored
(confusions forgiven; there are no super-categories, so COCO's Sim is the same); BG with every false positive
on background removed (precision 1 up to the recall Oth reaches); FN 1.0 (nothing missed). Each gap between
neighbours is what that kind of error costs.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contextlib
import io

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from otxlite.core.coco_metrics import (
    THRESHOLDS, CocoEvaluation, ImageDetections, coco_evaluation, evaluate_predictions, f1_curve, mask_matches,
)
from otxlite.core.fileio import atomic_path, write_json_atomic, write_text_atomic
from otxlite.core.images import read_image, write_image
from otxlite.report.visualize import draw_instances

WORST_IMAGES = 8
SIZES = ("small", "medium", "large")


def evaluate_and_report(ann_file: Path, predictions: list[ImageDetections], labels: list[str], report_dir: Path,
                        confidence_threshold: float | None, unless_below: float = -1.0) -> dict[str, Any]:
    """``evaluate_predictions``'s metrics, and the report written to ``report_dir`` (COCOeval runs once) at
    ``confidence_threshold`` (``None``: the best F-measure's) if the mask mAP reaches ``unless_below``
    (training: only for the validations whose model is kept as weights.pth)."""
    evaluation = coco_evaluation(ann_file, predictions)
    metrics = evaluate_predictions(ann_file, predictions, labels, evaluation)
    if metrics["mask_mAP"] >= unless_below:
        threshold = metrics["best_confidence_threshold"] if confidence_threshold is None else confidence_threshold
        write_model_report(report_dir, evaluation, predictions, labels, threshold, metrics)
    return metrics


@dataclass
class ImageErrors:
    """What one image got wrong at the confidence threshold."""

    image_id: int
    false_positives: int  # kept detections on background (or on an already matched object)
    missed: int  # ground-truth objects no kept detection covers
    wrong_class: int  # matched, but with another class

    @property
    def total(self) -> int:
        return self.false_positives + self.missed + self.wrong_class


def confusion(evaluation: CocoEvaluation, predictions: list[ImageDetections], num_classes: int,
              threshold: float) -> tuple[np.ndarray, list[ImageErrors]]:
    """Confusion matrix [num_classes + 1, num_classes + 1] (last row/column: background) of the detections
    scoring at least ``threshold``, and each image's errors."""
    gt = evaluation.gt
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    background = num_classes
    by_image = {p.image_id: p for p in predictions}
    errors = []
    for image_id in gt.getImgIds():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd")]
        crowd = [gt.annToRLE(a) for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if a.get("iscrowd")]
        pred = by_image.get(image_id)
        order = [i for i in np.argsort(-pred.scores) if pred.scores[i] >= threshold] if pred else []
        dts = [pred.masks[i] for i in order] if pred else []
        real = [gt.annToRLE(a) for a in anns]
        ious = mask_utils.iou(dts, real, [0] * len(real)) if dts and real else np.zeros((len(dts), len(real)))
        on_crowd = (mask_utils.iou(dts, crowd, [1] * len(crowd)).max(axis=1) >= 0.5) if dts and crowd \
            else np.zeros(len(dts), bool)
        taken = np.zeros(len(real), bool)
        counts = ImageErrors(image_id, 0, 0, 0)
        for row, i in enumerate(order):
            predicted = int(pred.labels[i])
            free = np.where(~taken & (ious[row] >= 0.5))[0]
            if len(free):
                match = free[np.argmax(ious[row][free])]
                taken[match] = True
                true = int(anns[match]["category_id"]) - 1
                matrix[true, predicted] += 1
                counts.wrong_class += int(true != predicted)
            elif not on_crowd[row]:
                matrix[background, predicted] += 1
                counts.false_positives += 1
        for index in np.where(~taken)[0]:
            matrix[int(anns[index]["category_id"]) - 1, background] += 1
            counts.missed += 1
        errors.append(counts)
    return matrix, errors


def pr_curves(evaluator: Any, labels: list[str]) -> dict[str, list[float]]:
    """Precision at COCOeval's 101 recall points, per class, at IoU 0.5 (all areas, 100 detections)."""
    if evaluator is None:
        return {}
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # [R, K]
    return {labels[cat_id - 1]: [round(max(float(v), 0.0), 5) for v in precision[:, k]]
            for k, cat_id in enumerate(evaluator.params.catIds)}


def ap_by_size(evaluation: CocoEvaluation) -> dict[str, dict[str, float | None]]:
    """mAP (IoU 0.5:0.95) of small, medium and large objects for masks and boxes; None: no such objects."""
    result = {}
    for name, evaluator in (("mask", evaluation.segm), ("box", evaluation.bbox)):
        stats = evaluator.stats[3:6] if evaluator is not None else [0.0] * 3
        result[name] = {size: (round(float(v), 5) if v >= 0 else None) for size, v in zip(SIZES, stats)}
    return result


def error_breakdown(evaluation: CocoEvaluation) -> dict[str, float]:
    """Mask AP with each kind of error forgiven in turn (see the module docstring)."""
    if evaluation.segm is None:
        return {name: (1.0 if name == "FN" else 0.0) for name in ("C75", "C50", "Loc", "Oth", "BG", "FN")}
    result = {}
    for name, iou, use_categories in (("C75", 0.75, 1), ("C50", 0.5, 1), ("Loc", 0.1, 1), ("Oth", 0.1, 0)):
        evaluator = COCOeval(evaluation.gt, evaluation.segm.cocoDt, "segm")
        evaluator.params.iouThrs = np.array([iou])
        evaluator.params.useCats = use_categories
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"][0, :, :, 0, -1]  # [R, K]: all areas, 100 detections
        per_class = [column[column > -1].mean() for column in precision.T if (column > -1).any()]
        result[name] = round(float(np.mean(per_class)), 5) if per_class else 0.0
        if name == "Oth":
            recall = evaluator.eval["recall"][0, 0, 0, -1]  # the highest recall reached, classes ignored
            points = evaluator.params.recThrs
            result["BG"] = round(float((points <= max(float(recall), 0.0) + 1e-9).mean()), 5)
    result["FN"] = 1.0
    return result


def write_model_report(out_dir: Path, evaluation: CocoEvaluation, predictions: list[ImageDetections],
                       labels: list[str], threshold: float, metrics: dict[str, Any]) -> Path:
    """Write the report folder (see the module docstring); return ``report.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    matrix, errors = confusion(evaluation, predictions, len(labels), threshold)
    curve = f1_curve(*mask_matches(evaluation.gt, predictions))
    data = {
        "confidence_threshold": threshold,
        "mask_pr_curve": pr_curves(evaluation.segm, labels),
        "box_pr_curve": pr_curves(evaluation.bbox, labels),
        "recall_points": [round(float(r), 2) for r in np.linspace(0, 1, 101)],
        "f1_curve": {"thresholds": [float(t) for t in THRESHOLDS], "f1": [round(float(v), 5) for v in curve]},
        "confusion_matrix": {"classes": [*labels, "background"], "rows_true_columns_predicted": matrix.tolist()},
        "ap_by_size": ap_by_size(evaluation),
        "error_breakdown": error_breakdown(evaluation),
    }
    worst = sorted((e for e in errors if e.total), key=lambda e: -e.total)[:WORST_IMAGES]
    data["worst_images"] = [_draw_worst(out_dir / "worst", rank, e, evaluation, predictions, labels, threshold)
                            for rank, e in enumerate(worst, 1)]
    plots = _plot_all(out_dir, data, labels)
    write_json_atomic(out_dir / "report.json", data)
    return write_text_atomic(out_dir / "report.html", _html(data, metrics, plots))


def _draw_worst(folder: Path, rank: int, errors: ImageErrors, evaluation: CocoEvaluation,
                predictions: list[ImageDetections], labels: list[str], threshold: float) -> dict[str, Any]:
    """Ground truth (left) and kept predictions (right) of one image, side by side, drawn at a readable size."""
    gt = evaluation.gt
    info = gt.loadImgs([errors.image_id])[0]
    image = read_image(info["file_name"])
    if image is None:
        image = np.zeros((info["height"], info["width"], 3), np.uint8)
    scale = _panel_scale(image.shape[1])
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[errors.image_id]))
    true_labels = [int(a["category_id"]) - 1 for a in anns]
    true_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
    pred = next((p for p in predictions if p.image_id == errors.image_id), None)
    keep = [i for i in range(len(pred.scores)) if pred.scores[i] >= threshold] if pred else []
    panels = [
        _panel(image, scale, [gt.annToMask(a) for a in anns], true_boxes, true_labels, labels, None, "ground truth"),
        _panel(image, scale, [mask_utils.decode(pred.masks[i]) for i in keep], pred.boxes[keep] if pred else
               np.zeros((0, 4)), [int(pred.labels[i]) for i in keep], labels, pred.scores[keep] if pred else None,
               f"predicted (>= {threshold:.2f})"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{rank:02d}_{Path(info['file_name']).stem}.png"
    with atomic_path(folder / name) as tmp:
        write_image(tmp, np.concatenate(panels, axis=1))
    return {"file": f"worst/{name}", "image": info["file_name"], "false_positives": errors.false_positives,
            "missed": errors.missed, "wrong_class": errors.wrong_class}


def _panel_scale(width: int, smallest: int = 320, largest: int = 1024) -> float:
    """The factor that brings a panel's width between ``smallest`` and ``largest`` pixels."""
    return min(max(width, smallest), largest) / width


def _panel(image: np.ndarray, scale: float, masks: list[np.ndarray], boxes: np.ndarray, label_indices: list[int],
           labels: list[str], scores: np.ndarray | None, caption: str) -> np.ndarray:
    """``image`` with these instances, scaled by ``scale`` before drawing (so text stays sharp), captioned."""
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    masks = [cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for m in masks]
    drawn = draw_instances(scaled, masks, np.asarray(boxes, np.float32) * scale, label_indices,
                           [labels[i] for i in label_indices], scores)
    return _caption(drawn, caption)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((24, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def _plot_all(out_dir: Path, data: dict[str, Any], labels: list[str]) -> dict[str, str]:
    """Draw every plot; return {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        plots[title] = name

    recall = data["recall_points"]
    for key, what in (("mask_pr_curve", "mask"), ("box_pr_curve", "box")):
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
        curves = data[key]
        for label, precision in curves.items():
            ax.plot(recall, precision, label=f"{label} (AP50 {np.mean(precision):.3f})")
        if curves:
            mean = np.mean(list(curves.values()), axis=0)
            ax.plot(recall, mean, color="black", linewidth=2.5, label=f"all classes (mAP50 {mean.mean():.3f})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
               title=f"{what.capitalize()} precision-recall at IoU 0.5")
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(fontsize=8, loc="lower left")
        else:  # no class had a detection to draw a curve from
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        save(fig, f"{key}.png", f"{what.capitalize()} precision-recall")

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    f1 = data["f1_curve"]
    ax.plot(f1["thresholds"], f1["f1"], color="tab:blue")
    best = int(np.argmax(f1["f1"]))
    ax.axvline(data["confidence_threshold"], color="tab:red", linestyle="--",
               label=f"model's threshold {data['confidence_threshold']:.2f}")
    ax.scatter([f1["thresholds"][best]], [f1["f1"][best]], color="black", zorder=3,
               label=f"best F1 {f1['f1'][best]:.3f} at {f1['thresholds'][best]:.2f}")
    ax.set(xlabel="confidence threshold", ylabel="F1 (masks, IoU 0.5)", xlim=(0, 1), ylim=(0, 1.02),
           title="F1 against the confidence threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "f1_curve.png", "F1 against the confidence threshold")

    classes = data["confusion_matrix"]["classes"]
    matrix = np.array(data["confusion_matrix"]["rows_true_columns_predicted"])
    side = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=100)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix\n(detections >= {data['confidence_threshold']:.2f}, mask IoU >= 0.5)")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    for (row, column), value in np.ndenumerate(matrix):
        ax.text(column, row, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black", fontsize=9)
    save(fig, "confusion_matrix.png", "Confusion matrix")

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    width = 0.38
    for offset, what in ((-width / 2, "mask"), (width / 2, "box")):
        values = [data["ap_by_size"][what][size] for size in SIZES]
        bars = ax.bar(np.arange(len(SIZES)) + offset, [v or 0.0 for v in values], width, label=f"{what} mAP")
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                    "n/a" if value is None else f"{value:.3f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(SIZES)))
    ax.set_xticklabels(["small (< 32²)", "medium", "large (> 96²)"])
    ax.set(ylabel="mAP (IoU 0.5:0.95)", ylim=(0, 1.05), title="mAP by object size (n/a: no such objects)")
    ax.legend(fontsize=8)
    save(fig, "ap_by_size.png", "mAP by object size")

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    names = list(data["error_breakdown"])
    values = [data["error_breakdown"][n] for n in names]
    bars = ax.bar(range(len(names)), values, color=plt.cm.viridis(np.linspace(0.15, 0.9, len(names))))
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"{value:.3f}", ha="center", fontsize=8)
    meaning = {"C75": "IoU 0.75", "C50": "IoU 0.5", "Loc": "IoU 0.1", "Oth": "classes\nignored",
               "BG": "no background\nFP", "FN": "no misses"}
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{meaning[n]}" for n in names], fontsize=8)
    ax.set(ylabel="mask AP", ylim=(0, 1.1), title="Mask AP with each kind of error forgiven")
    save(fig, "error_breakdown.png", "Error breakdown")
    return plots


def _html(data: dict[str, Any], metrics: dict[str, Any], plots: dict[str, str]) -> str:
    escape = html.escape
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{metrics[k]:.4f}</td></tr>"
                   for k in ("mask_mAP", "mask_mAP_50", "bbox_mAP", "bbox_mAP_50", "f_measure"))
    classes = "".join(f"<tr><td>{escape(label)}</td><td>{v['mask_mAP']:.4f}</td></tr>"
                      for label, v in metrics["per_class"].items())
    figures = "".join(f"<figure><img src='{escape(name)}' alt='{escape(title)}'><figcaption>{escape(title)}"
                      "</figcaption></figure>" for title, name in plots.items())
    worst = "".join(
        f"<figure><img src='{escape(w['file'])}' alt='{escape(w['image'])}'><figcaption>{escape(Path(w['image']).name)}:"
        f" {w['missed']} missed, {w['false_positives']} false positives, {w['wrong_class']} wrong class</figcaption>"
        "</figure>" for w in data["worst_images"]) or "<p>No image has an error at this threshold.</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>otxlite evaluation report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} td:first-child{{text-align:left}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}} img{{max-width:640px}}</style></head>
<body><h1>Evaluation report</h1>
<p>{metrics['num_images']} images; confidence threshold {data['confidence_threshold']:.2f} for the confusion
matrix and the worst images (all detections for mAP).</p>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>Mask mAP per class</h2><table><tr><th>class</th><th>mask mAP</th></tr>{classes}</table>
<h2>Plots</h2>{figures}
<h2>Worst images</h2>{worst}
</body></html>
"""
