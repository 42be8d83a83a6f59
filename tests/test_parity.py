"""The exported IR gives the PyTorch model's answers: mask mAP and matched detections (issue 5's parity bar)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import slow_fixture
from model_api_agreement import check_model_api_agrees

from otxlite.app.evaluate import evaluate


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes a [N,4] and b [M,4]."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


@slow_fixture(scope="module")
def pytorch_detector(trained_run):
    from mmdet.apis import init_detector

    from otxlite.core.artifacts import load_weights

    loaded = load_weights(trained_run.weights)
    cfg = loaded.mmengine_config()
    cfg.test_dataloader = cfg.val_dataloader
    return init_detector(cfg, str(trained_run.weights), device="cpu"), loaded.record.confidence_threshold


def test_ir_detections_match_pytorch(pytorch_detector, exported_ir: Path, sample_dataset: Path) -> None:
    """PyTorch detections above the threshold have an IR detection of the same label: >= 95% of the confident
    ones (score >= 0.3) with box IoU >= 0.95, >= 90% of all with IoU >= 0.9. The sample model is barely trained
    and its threshold low (0.05-0.1): its weak boxes move by a pixel with RoIAlign's rounding (OpenVINO's RoI
    feature extractor against mmcv's), the confident ones do not."""
    from mmdet.apis import inference_detector

    from otxlite.runtime.predictor import Predictor

    model, threshold = pytorch_detector
    predictor = Predictor(exported_ir)
    best_iou, scores = [], []  # per PyTorch detection: the best IoU of an IR detection of its label
    for path in sorted(sample_dataset.glob("images/*/*.jpg")):
        reference = inference_detector(model, str(path)).pred_instances
        keep = reference.scores.numpy() >= threshold
        ref_boxes, ref_labels = reference.bboxes.numpy()[keep], reference.labels.numpy()[keep]
        ir = predictor.predict(cv2.imread(str(path)))
        candidates = ir.scores >= threshold - 0.05  # a score a hair below the threshold is still the same box
        ious = box_iou(ref_boxes, ir.boxes[candidates]) if len(ref_boxes) else np.zeros((0, 0))
        for row, label in enumerate(ref_labels):
            same_label = ious[row][ir.labels[candidates] == label]
            best_iou.append(same_label.max() if len(same_label) else 0.0)
        scores.extend(reference.scores.numpy()[keep])
    best_iou, scores = np.array(best_iou), np.array(scores)
    confident = scores >= max(threshold, 0.3)
    assert confident.sum() >= 5, "the trained sample model should detect something with confidence"
    assert (best_iou[confident] >= 0.95).mean() >= 0.95, (best_iou[confident] >= 0.95).sum()
    assert (best_iou >= 0.9).mean() >= 0.9, ((best_iou >= 0.9).sum(), len(best_iou))


@pytest.mark.slow
def test_ir_and_half_precision_mask_map_match_pytorch(coins_run, coins_ir: Path, coins_val: Path,
                                                      tmp_path: Path) -> None:
    """On a model that learned (the coins photo), the FP32 IR's mask mAP is the PyTorch model's within 0.01,
    the FP16 IR's within 0.02 (a model that detects almost nothing would make any difference look like noise)."""
    from otxlite.export.pipeline import export_openvino

    half_precision_ir = export_openvino(coins_run.weights, tmp_path / "fp16", half_precision=True)
    pytorch, _ = evaluate(coins_run.weights, coins_val, tmp_path / "torch")
    fp32, _ = evaluate(coins_ir, coins_val, tmp_path / "fp32_eval")
    fp16, _ = evaluate(half_precision_ir, coins_val, tmp_path / "fp16_eval")
    assert pytorch["mask_mAP"] >= 0.3, f"the model must have learned for this test to mean anything: {pytorch}"
    assert abs(fp32["mask_mAP"] - pytorch["mask_mAP"]) <= 0.01, (fp32["mask_mAP"], pytorch["mask_mAP"])
    assert abs(fp16["mask_mAP"] - pytorch["mask_mAP"]) <= 0.02, (fp16["mask_mAP"], pytorch["mask_mAP"])


def test_model_api_decodes_the_mask_rcnn_ir(coins_ir: Path, coins_val: Path) -> None:
    """Model API's MaskRCNN pastes each 28x28 mask into its box as otxlite does, on a model that learned."""
    assert check_model_api_agrees(coins_ir, next(coins_val.glob("images/val/*.png")), "MaskRCNN") >= 3
