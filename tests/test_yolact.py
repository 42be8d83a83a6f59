"""YOLACT-MobileNetV2: its 550 px template, and a model that learned (the coins photo) through export with
otxlite's own post-processing, PyTorch vs IR parity, INT8, predict and serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import slow_fixture
from model_api_agreement import check_model_api_agrees

from otxlite.core.errors import OtxliteError
from otxlite.core.templates import apply_overrides, load_template
from test_rtmdet import (check_int8_predict_and_serve, check_ir_matches_pytorch, exported,
                         ir_layout_and_outputs, trained_on_coins)

COINS_PARAMS = ["learning_parameters.num_iters=120", "learning_parameters.batch_size=2",
                "learning_parameters.learning_rate_warmup_iters=20",
                "data.input_size=[256,256]", "learning_parameters.num_workers=0"]


def test_template_takes_any_input_size_where_fpn_templates_take_multiples_of_32() -> None:
    """YOLACT does not pad its input (its FPN resizes each level to the next one's size): 550, its published
    size, is its default and any size is allowed; Mask R-CNN pads to 32 and says so."""
    yolact = load_template("YOLACT-MobileNetV2")
    assert yolact.hyper_parameters["data"]["input_size"] == [550, 550]
    sized = apply_overrides(yolact.hyper_parameters, ["data.input_size=[500,375]"],
                            yolact.family.input_size_multiple)
    assert sized["data"]["input_size"] == [500, 375]
    maskrcnn = load_template("MaskRCNN-EfficientNetB2B")
    with pytest.raises(OtxliteError, match="a multiple of 32"):
        apply_overrides(maskrcnn.hyper_parameters, ["data.input_size=[500,375]"],
                        maskrcnn.family.input_size_multiple)


@slow_fixture(scope="module")
def yolact_run(coins: Path, tmp_path_factory: pytest.TempPathFactory):
    """YOLACT-MobileNetV2 trained from random weights on the coins photo (120 epochs at 256 px)."""
    return trained_on_coins("YOLACT-MobileNetV2", coins, tmp_path_factory, COINS_PARAMS)


@slow_fixture(scope="module")
def yolact_ir(yolact_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(yolact_run, tmp_path_factory)


def test_the_ir_gives_box_cropped_mask_probabilities_at_stride_4(yolact_ir: Path, coins_val: Path) -> None:
    """Masks over the whole input at H/4 x W/4, zero outside each detection's box (plus one prototype cell)."""
    layout, boxes, masks = ir_layout_and_outputs(yolact_ir, coins_val)
    assert layout == ("yolact", "image", "model", "probabilities")
    found = boxes[:, 4] > 0.3
    assert masks.shape[1:] == (64, 64) and masks.shape[0] == boxes.shape[0] and found.sum() >= 3
    assert masks.min() >= 0 and masks.max() <= 1
    for mask, box in zip(masks[found], boxes[found, :4] / 4):
        ys, xs = np.nonzero(mask > 0)
        assert xs.min() >= np.floor(box[0]) - 1 and xs.max() < np.ceil(box[2]) + 1
        assert ys.min() >= np.floor(box[1]) - 1 and ys.max() < np.ceil(box[3]) + 1


def test_ir_matches_pytorch_on_a_model_that_learned(yolact_run, yolact_ir: Path, coins_val: Path,
                                                   tmp_path: Path) -> None:
    check_ir_matches_pytorch(yolact_run.weights, yolact_ir, coins_val, tmp_path, min_iou=0.95)


def test_model_api_decodes_the_ir(yolact_ir: Path, coins_val: Path) -> None:
    assert check_model_api_agrees(yolact_ir, next(coins_val.glob("images/val/*.png")), "DETRInstSeg") >= 3


def test_int8_predict_and_serve(yolact_ir: Path, coins: Path, coins_val: Path, tmp_path: Path) -> None:
    check_int8_predict_and_serve(yolact_ir, coins, coins_val, tmp_path)
