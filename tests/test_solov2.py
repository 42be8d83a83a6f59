"""SOLOv2: a model that learned (the coins photo) through export, PyTorch vs IR parity and OpenVINO Model API,
which reads its whole-image masks through ``DETRInstSeg``. From random weights SOLOv2 learns the photo slowly
(ResNet-50, 2 training tiles): after 120 epochs about 0.15 mask mAP, 0.47 at IoU 0.5, enough for a few confident
coins whose masks both decoders must agree on."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import slow_fixture
from model_api_agreement import check_model_api_agrees

from test_rtmdet import evaluate, exported, ir_layout_and_outputs, trained_on_coins

COINS_PARAMS = ["learning_parameters.num_iters=120", "learning_parameters.batch_size=2",
                "learning_parameters.learning_rate_warmup_iters=20",
                "data.input_size=[256,256]", "learning_parameters.num_workers=0"]


@slow_fixture(scope="module")
def solov2_run(coins: Path, tmp_path_factory: pytest.TempPathFactory):
    """SOLOv2 trained from random weights on the coins photo (120 epochs at 256 px)."""
    return trained_on_coins("SOLOv2", coins, tmp_path_factory, COINS_PARAMS)


@slow_fixture(scope="module")
def solov2_ir(solov2_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(solov2_run, tmp_path_factory)


def test_the_ir_gives_whole_image_probabilities_and_boxes_from_the_masks(solov2_ir: Path, coins_val: Path) -> None:
    layout, boxes, masks = ir_layout_and_outputs(solov2_ir, coins_val)
    assert layout == ("solov2", "image", "masks", "probabilities")
    assert masks.shape[0] == boxes.shape[0] and (boxes[:, 4] > 0.3).sum() >= 3
    assert masks.min() >= 0 and masks.max() <= 1


def test_ir_matches_pytorch_on_a_model_that_learned(solov2_run, solov2_ir: Path, coins_val: Path,
                                                   tmp_path: Path) -> None:
    pytorch, _ = evaluate(solov2_run.weights, coins_val, tmp_path / "torch")
    ir, _ = evaluate(solov2_ir, coins_val, tmp_path / "ir")
    assert pytorch["mask_mAP_50"] >= 0.15, f"the model must have learned for this test to mean anything: {pytorch}"
    assert abs(ir["mask_mAP"] - pytorch["mask_mAP"]) <= 0.01, (ir["mask_mAP"], pytorch["mask_mAP"])


def test_model_api_decodes_the_ir(solov2_ir: Path, coins_val: Path) -> None:
    """Same detections and scores above the threshold, every mask over 1000 px at IoU >= 0.9 (6 masks here)."""
    assert check_model_api_agrees(solov2_ir, next(coins_val.glob("images/val/*.png")), "DETRInstSeg") >= 2
