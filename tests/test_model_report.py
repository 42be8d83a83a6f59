"""The evaluation report (otxlite/report/model_report.py) on a hand-made set whose every error is known."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from otxlite.core.coco_metrics import ImageDetections, encode_masks
from otxlite.report.model_report import evaluate_and_report

LABELS = ["cat", "dog"]
SIZE = 64


def square(x0: int, y0: int, side: int = 20) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def detections(image_id: int, found: list[tuple[np.ndarray, int, float]]) -> ImageDetections:
    masks = np.stack([m for m, _, _ in found]) if found else np.zeros((0, SIZE, SIZE), bool)
    boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                       np.nonzero(m)[0].max() + 1] for m, _, _ in found], np.float32).reshape(-1, 4)
    return ImageDetections(image_id, boxes, np.array([s for _, _, s in found], np.float32),
                           np.array([c for _, c, _ in found], np.int64), encode_masks(masks))


@pytest.fixture()
def known_set(tmp_path: Path) -> tuple[Path, list[ImageDetections]]:
    """Image 1: a cat (A) and a dog (B); predicted: cat on A, *cat* on B, a dog on empty background.
    Image 2: a cat (C); predicted: only a dog on C scoring 0.2 (under the 0.5 threshold)."""
    a, b, c, empty = square(5, 5), square(35, 35), square(20, 20), square(40, 2, 12)
    images, annotations = [], []
    for image_id, objects in ((1, [(a, 1), (b, 2)]), (2, [(c, 1)])):
        path = tmp_path / f"image_{image_id}.png"
        cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 90 * image_id, np.uint8))
        images.append({"id": image_id, "file_name": str(path), "width": SIZE, "height": SIZE})
        for mask, category in objects:
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(mask.sum()), "iscrowd": 0,
                                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    predictions = [detections(1, [(a, 0, 0.9), (b, 0, 0.8), (empty, 1, 0.7)]), detections(2, [(c, 1, 0.2)])]
    return ann_file, predictions


def test_report_numbers_of_a_known_set(known_set, tmp_path: Path) -> None:
    ann_file, predictions = known_set
    metrics = evaluate_and_report(ann_file, predictions, LABELS, tmp_path / "report", confidence_threshold=0.5)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["confusion_matrix"]["classes"] == ["cat", "dog", "background"]
    assert data["confusion_matrix"]["rows_true_columns_predicted"] == [
        [1, 0, 1],  # cat: found on image 1, missed on image 2 (its dog scores under the threshold)
        [1, 0, 0],  # dog: predicted as a cat
        [0, 1, 0],  # background: the dog on nothing
    ]
    # Within-class matching (OTX's F-measure): 1 TP, 2 FP, 2 FN at 0.5 -> F1 1/3; the 0.2 dog adds a FP below.
    f1 = dict(zip(data["f1_curve"]["thresholds"], data["f1_curve"]["f1"]))
    assert f1[0.5] == pytest.approx(1 / 3, abs=1e-4) and f1[0.05] == pytest.approx(2 / 7, abs=1e-4)
    # best: keep only the 0.9 cat (above 0.8): 1 TP, 0 FP, 2 FN -> 0.5
    assert metrics["f_measure"] == pytest.approx(0.5) == max(f1.values())
    assert 0.8 < metrics["best_confidence_threshold"] <= 0.9
    worst = data["worst_images"]
    assert [Path(w["image"]).name for w in worst] == ["image_1.png", "image_2.png"]
    assert (worst[0]["false_positives"], worst[0]["missed"], worst[0]["wrong_class"]) == (1, 0, 1)
    assert (worst[1]["false_positives"], worst[1]["missed"], worst[1]["wrong_class"]) == (0, 1, 0)
    assert data["ap_by_size"]["mask"]["medium"] is None and data["ap_by_size"]["mask"]["large"] is None
    assert data["ap_by_size"]["mask"]["small"] == pytest.approx(metrics["mask_mAP"], abs=1e-4)
    # cat: one of two cats found first, at precision 1 up to recall 0.5, then never again
    cat = data["mask_pr_curve"]["cat"]
    assert cat[0] == 1.0 and cat[50] == 1.0 and cat[51] == 0.0
    assert set(data["mask_pr_curve"]) == set(data["box_pr_curve"]) == {"cat", "dog"}
    # Classes ignored at IoU 0.1: A, B (the dog taken for a cat) and C (the 0.2 dog) are found, one FP between:
    # precision 1 up to recall 2/3, then 3/4 -> (67 x 1 + 34 x 0.75) / 101 recall points
    errors = data["error_breakdown"]
    assert errors["C50"] == pytest.approx(metrics["mask_mAP_50"], abs=1e-4)
    assert errors["Oth"] == pytest.approx((67 + 34 * 0.75) / 101, abs=1e-4)
    assert errors["BG"] == 1.0 and errors["FN"] == 1.0  # every object is reached, classes ignored
    assert errors["C75"] <= errors["C50"] <= errors["Loc"] <= errors["Oth"] <= errors["BG"] <= errors["FN"]


def test_report_images_and_page(known_set, tmp_path: Path) -> None:
    ann_file, predictions = known_set
    evaluate_and_report(ann_file, predictions, LABELS, tmp_path / "report", confidence_threshold=0.5)
    report = tmp_path / "report"
    page = (report / "report.html").read_text()
    for name in ("mask_pr_curve.png", "box_pr_curve.png", "f1_curve.png", "confusion_matrix.png", "ap_by_size.png",
                 "error_breakdown.png", "worst/01_image_1.png", "worst/02_image_2.png"):
        assert f"src='{name}'" in page, name
        image = cv2.imread(str(report / name))
        assert image is not None and image.std() > 0, name  # a real picture, not a blank file
    side_by_side = cv2.imread(str(report / "worst" / "01_image_1.png"))
    assert side_by_side.shape[:2] == (24 + 320, 2 * 320)  # truth | prediction, each scaled up to 320 px, captioned
    left, right = side_by_side[24:, :320], side_by_side[24:, 320:]
    assert not np.array_equal(left, right)  # the predictions differ from the truth, so must the drawings
    assert "cat" in page and "1 missed" not in page.split("image_1.png")[1].split("</figcaption>")[0]


def test_training_reports_only_the_validations_whose_model_is_kept(known_set, tmp_path: Path) -> None:
    """During training the metric writes report/ when the mask mAP is the best so far (ties: the later), the
    rule RunFolderHook keeps weights.pth by, so the report always describes the saved model."""
    from otxlite.training.metrics import InstanceSegMetric

    ann_file, good = known_set
    poor = [ImageDetections(p.image_id, p.boxes[:0], p.scores[:0], p.labels[:0], []) for p in good]
    metric = InstanceSegMetric(str(ann_file), LABELS, report_dir=str(tmp_path / "report"), confidence_threshold=0.5,
                               report_kept_only=True)
    matrix = lambda: json.loads((tmp_path / "report" / "report.json").read_text())["confusion_matrix"]  # noqa: E731
    metric.compute_metrics(poor)  # first validation: kept
    assert matrix()["rows_true_columns_predicted"][2] == [0, 0, 0]
    metric.compute_metrics(good)  # better: kept, report rewritten
    kept = matrix()
    assert kept["rows_true_columns_predicted"][2] == [0, 1, 0]
    metric.compute_metrics(poor)  # worse: weights.pth stays, and so does its report
    assert matrix() == kept
