"""RTMDet-Ins: its recipe, its head's masks on non-square images, and a model that learned (the coins photo)
through export, PyTorch vs IR parity, INT8, predict and serve."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import slow_fixture
from model_api_agreement import check_model_api_agrees

from otxlite.training.recipes import MOSAIC_MIN_IMAGES, stage2_epochs
from otxlite.app.evaluate import evaluate
from otxlite.core.templates import load_template
from test_parity import box_iou
from test_serve import b64, encode, serving

COINS_PARAMS = ["learning_parameters.num_iters=60", "learning_parameters.batch_size=2",
                "learning_parameters.learning_rate_warmup_iters=20",
                "data.input_size=[256,256]", "learning_parameters.num_workers=0"]


def test_rtmdet_recipe(tmp_path: Path) -> None:
    """From 100 images on: mosaic and mix-up, then the deployment resize for the last epochs; fewer: the plain
    resize with colour jitter throughout (data.augmentation forces either). AdamW without decay on norms and
    biases; warmup, the base rate, then a cosine decay over the second half; evaluation on a plain resize."""
    from otxlite.training.config import build_runner_config
    from otxlite.core.templates import apply_overrides

    template = load_template("RTMDet-Ins-tiny")

    def config(images: int, *params: str):
        hyper = apply_overrides(template.hyper_parameters, list(params))
        return build_runner_config(template, hyper, ["coin"], tmp_path / "train.json", tmp_path / "val.json",
                                   tmp_path, num_train_images=images)

    def first_stage(cfg) -> list[str]:
        return [step["type"] for step in cfg.train_dataloader.dataset.pipeline]

    def switches(cfg) -> list[dict]:
        return [h for h in cfg.custom_hooks if h["type"] == "PipelineSwitchHook"]

    plain = ["LoadViewedImage", "LoadAnnotations", "Resize", "YOLOXHSVRandomAug", "RandomFlip", "PackDetInputs"]
    large = config(MOSAIC_MIN_IMAGES)
    assert first_stage(large)[2:4] == ["CachedMosaic", "RandomResize"] and "CachedMixUp" in first_stage(large)
    epochs = template.hyper_parameters["learning_parameters"]["num_iters"]
    [switch] = switches(large)
    assert switch["switch_epoch"] == epochs - stage2_epochs(epochs) == 93
    assert [step["type"] for step in switch["switch_pipeline"]] == plain
    small = config(MOSAIC_MIN_IMAGES - 1)
    assert first_stage(small) == plain and not switches(small)
    assert first_stage(config(5, "data.augmentation=mosaic"))[2] == "CachedMosaic"
    assert first_stage(config(500, "data.augmentation=plain")) == plain

    assert large.optim_wrapper.optimizer.type == "AdamW" and large.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    assert large.optim_wrapper.clip_grad is None
    schedulers = {s["type"]: s for s in large.param_scheduler}
    assert set(schedulers) == {"LinearLR", "CosineAnnealingLR"}
    assert schedulers["CosineAnnealingLR"]["begin"] == epochs // 2
    base = template.hyper_parameters["learning_parameters"]["learning_rate"]
    assert schedulers["CosineAnnealingLR"]["eta_min"] == pytest.approx(0.05 * base)
    resize = large.val_dataloader.dataset.pipeline[1]
    assert (resize["type"], resize["keep_ratio"], resize["scale"]) == ("Resize", False, (640, 640))

    resnet = load_template("MaskRCNN-ResNet18")
    sgd = build_runner_config(resnet, resnet.hyper_parameters, ["coin"], tmp_path / "train.json",
                              tmp_path / "val.json", tmp_path, num_train_images=500)
    assert sgd.optim_wrapper.optimizer.type == "SGD" and "paramwise_cfg" not in sgd.optim_wrapper
    assert first_stage(sgd)[2:] == ["Resize", "RandomFlip", "PackDetInputs"] and not switches(sgd)


def test_masks_of_a_non_square_image_have_its_shape() -> None:
    """MMDetection 3.3 swaps the width and height scales when it brings RTMDet-Ins masks back to the image;
    otxlite's head does not (a 90x200 image resized to 128x128 gets 200x90 masks, boxes inside the image)."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import otxlite.models  # noqa: F401

    register_all_modules()
    torch.manual_seed(0)  # random weights and image: the same ones every run
    model_cfg = Config.fromfile(str(load_template("RTMDet-Ins-tiny").model_config)).model
    model_cfg.bbox_head.num_classes = 1
    model_cfg.test_cfg.score_thr = 0.0  # random weights: keep every candidate so masks are made
    model_cfg.backbone.pop("init_cfg", None)
    model = MODELS.build(model_cfg).eval()
    sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(200, 90), scale_factor=(128 / 90, 128 / 200)))
    image = torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)
    with torch.no_grad():
        found = model.test_step(dict(inputs=[image], data_samples=[sample]))[0].pred_instances
    assert len(found) > 0
    assert tuple(found.masks.shape[1:]) == (200, 90)
    assert float(found.bboxes[:, 2].max()) <= 90 * 1.5 and float(found.bboxes[:, 3].max()) <= 200 * 1.5


def trained_on_coins(template: str, coins: Path, tmp_path_factory: pytest.TempPathFactory, params: list[str]):
    """``template`` trained from random weights on the coins photo, with ``params``."""
    from otxlite.app.train import train

    return train(template, coins, output=tmp_path_factory.mktemp("coins_run"), pretrained=False, params=params)


def exported(run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from otxlite.export.pipeline import export_openvino

    return export_openvino(run.weights, tmp_path_factory.mktemp("coins_ir"))


def ir_layout_and_outputs(xml: Path, coins_val: Path) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The IR's (family, mask layout, box source, mask values) from its rt_info, and its raw ``boxes`` and the
    masks otxlite decodes (``mask_logits`` where the family's are logits) for the coins validation tile at 256 px."""
    import openvino as ov

    from otxlite.core.artifacts import read_metadata

    model = ov.Core().read_model(xml)
    metadata = read_metadata(model, xml)
    compiled = ov.Core().compile_model(model, "CPU")
    image = cv2.resize(cv2.imread(str(next(coins_val.glob("images/val/*.png")))), (256, 256))
    outputs = compiled(image.transpose(2, 0, 1)[None].astype(np.float32))
    layout = (metadata.family, metadata.mask_layout, metadata.box_source, metadata.mask_values)
    masks = "mask_logits" if metadata.mask_values == "logits" else "masks"
    return layout, outputs[compiled.output("boxes")], outputs[compiled.output(masks)]


@slow_fixture(scope="module")
def rtmdet_run(coins: Path, tmp_path_factory: pytest.TempPathFactory):
    """RTMDet-Ins-tiny trained from random weights on the coins photo (60 epochs at 256 px)."""
    return trained_on_coins("RTMDet-Ins-tiny", coins, tmp_path_factory, COINS_PARAMS)


@slow_fixture(scope="module")
def rtmdet_ir(rtmdet_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(rtmdet_run, tmp_path_factory)


def test_the_ir_keeps_mask_logits_at_stride_8_beside_the_boxes(rtmdet_ir: Path, coins_val: Path) -> None:
    layout, boxes, masks = ir_layout_and_outputs(rtmdet_ir, coins_val)
    assert layout == ("rtmdet_ins", "image", "model", "logits")
    assert masks.shape[1:] == (32, 32) and masks.shape[0] == boxes.shape[0] > 0
    assert masks.min() < 0 < masks.max()  # logits: background below 0, the coin above


def test_model_api_decodes_the_ir(rtmdet_ir: Path, coins_val: Path) -> None:
    """Model API reads ``masks`` (the IR's last output: a linear soft mask of the logits) as whole-image masks and
    finds otxlite's masks (with the sigmoid of the logits instead, its masks came out 5-15 % larger: IoU 0.84)."""
    assert check_model_api_agrees(rtmdet_ir, next(coins_val.glob("images/val/*.png")), "DETRInstSeg") >= 3


def test_ir_matches_pytorch_on_a_model_that_learned(rtmdet_run, rtmdet_ir: Path, coins_val: Path,
                                                   tmp_path: Path) -> None:
    check_ir_matches_pytorch(rtmdet_run.weights, rtmdet_ir, coins_val, tmp_path)


def check_ir_matches_pytorch(weights: Path, xml: Path, coins_val: Path, tmp_path: Path, min_iou: float = 0.9) -> None:
    """Mask mAP within 0.01, and every confident PyTorch detection has an IR one whose mask's box overlaps its
    mask's box by ``min_iou``."""
    from otxlite.training.inference import pytorch_detector
    from otxlite.runtime.predictor import Predictor

    pytorch, _ = evaluate(weights, coins_val, tmp_path / "torch")
    ir, _ = evaluate(xml, coins_val, tmp_path / "ir")
    assert pytorch["mask_mAP"] >= 0.3, f"the model must have learned for this test to mean anything: {pytorch}"
    assert abs(ir["mask_mAP"] - pytorch["mask_mAP"]) <= 0.01, (ir["mask_mAP"], pytorch["mask_mAP"])

    image = cv2.imread(str(next(coins_val.glob("images/val/*.png"))))
    detect = pytorch_detector(weights)
    masks, scores, _ = detect(image)
    predicted = Predictor(xml).predict(image, threshold=0.25)
    # a detection whose mask is empty after the crop to its box has no mask box to compare
    confident = (scores >= 0.3) & masks.reshape(len(masks), -1).any(axis=1)
    assert confident.sum() >= 3
    reference_boxes = np.array([_box_of(mask) for mask in masks[confident]], dtype=np.float32)
    ir_boxes = np.array([_box_of(mask) for mask in predicted.masks], dtype=np.float32).reshape(-1, 4)
    assert (box_iou(reference_boxes, ir_boxes).max(axis=1) >= min_iou).all()


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)


def test_int8_predict_and_serve(rtmdet_ir: Path, coins: Path, coins_val: Path, tmp_path: Path) -> None:
    check_int8_predict_and_serve(rtmdet_ir, coins, coins_val, tmp_path)


def check_int8_predict_and_serve(xml: Path, coins: Path, coins_val: Path, tmp_path: Path) -> None:
    """optimize keeps INT8 within 0.01 mask mAP of FP32 on the learned model; predict and serve answer with
    masks from the INT8 IR."""
    from otxlite.app.optimize import optimize
    from otxlite.app.predict import predict

    result = optimize(xml, coins, val_root=coins_val, output=tmp_path / "int8")
    fp32, _ = evaluate(xml, coins_val, tmp_path / "fp32_eval")
    int8, _ = evaluate(result.xml, coins_val, tmp_path / "int8_eval")
    assert fp32["mask_mAP"] - int8["mask_mAP"] <= 0.01, (fp32["mask_mAP"], int8["mask_mAP"])

    predict(result.xml, str(coins_val / "images" / "val"), tmp_path / "predict")
    predictions = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert sum(len(entry["boxes"]) for entry in predictions) >= 3
    assert all(det["polygon"] for entry in predictions for det in entry["boxes"])

    image = cv2.imread(str(next(coins_val.glob("images/val/*.png"))))
    payload = {"input_data": {"columns": ["image"], "data": [b64(encode(image))]}}
    with serving(result.xml) as client:
        answer = client.post("/score", json=payload)
    assert answer.status_code == 200, answer.text
    served = answer.json()[0]["boxes"]
    in_predict = next(entry["boxes"] for entry in predictions if entry["filename"].endswith(".png"))
    assert [d["label"] for d in served] == [d["label"] for d in in_predict] and len(served) >= 3
