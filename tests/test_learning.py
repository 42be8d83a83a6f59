"""The recipe that makes models learn: BN statistics, the lazy schedule, best-model ties, pretrained starts,
and a model trained on a real photo that detects in eval mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from otxlite.training.batchnorm import recompute_batchnorm_statistics, updating_batchnorms
from otxlite.training.config import MIN_PATIENCE_ITERS, build_runner_config, training_schedule
from otxlite.training.pretrained import COCO, IMAGENET, RANDOM, choose_pretrained_start
from otxlite.core.templates import apply_overrides, load_template


class TinyDetector(torch.nn.Module):
    """A backbone with one updating BN and one frozen (norm_eval) BN, as mmdet backbones have."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4, momentum=0.01))
        self.frozen = torch.nn.BatchNorm2d(3)
        self.data_preprocessor = lambda data, training: data

    def train(self, mode: bool = True) -> TinyDetector:
        super().train(mode)
        self.frozen.eval()  # what norm_eval=True does
        return self

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frozen(inputs))


def test_batchnorm_statistics_match_the_weights() -> None:
    torch.manual_seed(0)
    model = TinyDetector()
    batches = [{"inputs": torch.randn(2, 3, 8, 8) * 3 + 5} for _ in range(3)]
    bn = model.backbone[1]
    assert updating_batchnorms(model) == [bn]
    frozen_before = model.frozen.running_mean.clone()

    used = recompute_batchnorm_statistics(model, batches, num_batches=6)  # the 3 batches twice

    assert used == 6
    with torch.no_grad():
        features = model.backbone[0](torch.cat([b["inputs"] for b in batches]))
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)))
    assert bn.momentum == 0.01, "the layer's momentum is restored"
    torch.testing.assert_close(model.frozen.running_mean, frozen_before)  # norm_eval layers keep their statistics
    assert model.training


def test_schedule_of_a_tiny_dataset_is_lazy_and_validates_less_often() -> None:
    learning = {"num_iters": 150, "batch_size": 2, "learning_rate_warmup_iters": 20, "early_stop_patience": 10}
    tiny = training_schedule(learning, num_train_images=2)  # 1 iteration per epoch
    assert tiny.iters_per_epoch == 1 and tiny.val_interval == 5
    assert tiny.lazy_begin == 20, "plateau and early stopping wait for the warmup to end"
    assert tiny.plateau_patience * tiny.val_interval >= MIN_PATIENCE_ITERS
    assert tiny.batchnorm_batches == 10

    large = training_schedule({**learning, "batch_size": 4}, num_train_images=4000)  # 1000 iterations per epoch
    assert large.val_interval == 1 and large.lazy_begin == 3
    assert large.plateau_patience == 5 and large.early_stop_patience == 10
    assert large.batchnorm_batches == 20


def test_runner_config_applies_the_schedule(tmp_path: Path) -> None:
    template = load_template("MaskRCNN-EfficientNetB2B")
    hyper = apply_overrides(template.hyper_parameters, ["learning_parameters.num_iters=100",
                                                        "learning_parameters.learning_rate_warmup_iters=20",
                                                        "learning_parameters.batch_size=2"])
    cfg = build_runner_config(template, hyper, ["a"], tmp_path / "t.json", tmp_path / "v.json", tmp_path,
                              num_train_images=2)
    plateau = next(s for s in cfg.param_scheduler if s["type"] == "ReduceOnPlateauLR")
    early = next(h for h in cfg.custom_hooks if h["type"] == "LazyEarlyStoppingHook")
    assert plateau["begin"] == early["begin"] == 20
    assert early["min_delta"] == 1e-4, "a tie is no improvement (mmengine counts it as one at min_delta=0)"
    assert cfg.train_cfg.val_interval == 5
    assert cfg.custom_hooks[0]["type"] == "BatchNormStatisticsHook"


def test_lazy_early_stopping_ignores_early_validations() -> None:
    from otxlite.training.hooks import LazyEarlyStoppingHook

    hook = LazyEarlyStoppingHook(begin=3, monitor="coco/mask_mAP", rule="greater", min_delta=1e-4, patience=2)
    runner = SimpleNamespace(epoch=1, train_loop=SimpleNamespace(stop_training=False), logger=SimpleNamespace(info=print))
    for _ in range(3):
        hook.after_val_epoch(runner, {"coco/mask_mAP": 0.0})
    assert not runner.train_loop.stop_training
    runner.epoch = 3
    for _ in range(3):
        hook.after_val_epoch(runner, {"coco/mask_mAP": 0.0})
    assert runner.train_loop.stop_training


def test_ties_keep_the_later_epoch(tmp_path: Path) -> None:
    from otxlite.core.artifacts import ModelMetadata
    from otxlite.training.hooks import RunFolderHook

    record = ModelMetadata(family="mask_rcnn", labels=["a"], input_size=(64, 64), confidence_threshold=0.3)
    hook = RunFolderHook(str(tmp_path), record.to_dict(), 0.3)
    saved = []
    hook._save_weights = lambda runner, metrics: saved.append(runner.epoch)
    for epoch in (1, 2, 3):
        hook.after_val_epoch(SimpleNamespace(epoch=epoch), {"coco/mask_mAP": 0.0})
    assert saved == [1, 2, 3]
    hook.after_val_epoch(SimpleNamespace(epoch=4), {"coco/mask_mAP": -0.5})
    assert saved == [1, 2, 3]


def test_pretrained_start_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    coco, backbone = tmp_path / "coco.pth", tmp_path / "backbone.pth"
    backbone.write_bytes(b"x")
    assert choose_pretrained_start(str(coco), [str(backbone)]) == IMAGENET
    assert "ImageNet backbone instead" in capsys.readouterr().err
    coco.write_bytes(b"x")
    assert choose_pretrained_start(str(coco), [str(backbone)]) == COCO
    assert choose_pretrained_start(None, [str(tmp_path / "missing.pth")]) == RANDOM
    err = capsys.readouterr().err
    assert err.count("Warning") == 1 and "random weights" in err


def test_coco_start_loads_everything_but_the_class_layers(tmp_path: Path) -> None:
    """A checkpoint in the MMDetection zoo's layout (80 COCO classes, ``meta`` + ``state_dict``)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    template = load_template("MaskRCNN-ResNet18")
    hyper = apply_overrides(template.hyper_parameters, ["data.input_size=[128,128]"])
    coco_cfg = build_runner_config(template, hyper, [f"c{i}" for i in range(80)], tmp_path / "t.json", None,
                                   tmp_path, num_train_images=1)
    torch.manual_seed(1)
    zoo_model = MODELS.build(coco_cfg.model)
    zoo_state = zoo_model.state_dict()
    checkpoint = tmp_path / "mask_rcnn_coco.pth"
    torch.save({"meta": {"mmdet_version": "2.11.0", "CLASSES": [f"c{i}" for i in range(80)]}, "state_dict": zoo_state},
               checkpoint)

    template = dataclasses.replace(template, coco_checkpoint=str(checkpoint))
    cfg = build_runner_config(template, hyper, ["coin", "note"], tmp_path / "t.json", None, tmp_path,
                              num_train_images=1, pretrained_start=COCO)
    assert cfg.model.init_cfg == {"type": "Pretrained", "checkpoint": str(checkpoint)}
    assert "init_cfg" not in cfg.model.backbone, "the ImageNet backbone is not downloaded when COCO is used"
    torch.manual_seed(2)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = model.state_dict()
    for key in ("backbone.conv1.weight", "neck.fpn_convs.0.conv.weight", "rpn_head.rpn_conv.weight",
                "roi_head.bbox_head.shared_fcs.0.weight", "roi_head.mask_head.convs.0.conv.weight"):
        torch.testing.assert_close(state[key], zoo_state[key], msg=key)
    assert state["roi_head.bbox_head.fc_cls.weight"].shape[0] == 3  # 2 classes + background, re-initialised
    assert state["roi_head.mask_head.conv_logits.weight"].shape[0] == 2


@pytest.mark.slow
def test_model_trained_on_a_real_photo_detects_in_eval_mode(coins_run, coins_val: Path, tmp_path: Path) -> None:
    """From random weights, 30 iterations on a photo of coins (MaskRCNN-EfficientNetB2B, BN momentum 0.01):
    the saved model, in eval mode, finds the held-out coins. Without the BN statistics recomputed for the
    final weights it detects nothing at all (measured: 0 detections, mask mAP 0.000)."""
    from otxlite.app.evaluate import evaluate

    report, _ = evaluate(coins_run.weights, coins_val, tmp_path / "eval")
    assert report["num_images"] == 1
    assert report["mask_mAP_50"] >= 0.5, report
    assert report["f_measure"] >= 0.5, report
