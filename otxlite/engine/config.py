"""Template + hyper-parameters + prepared data -> one mmengine Config for the Runner.

Everything a run does is in this Config (saved as ``config.py`` in the run folder); the
recipe is OTX's for instance segmentation: resize + flip, SGD, gradient clipping, linear
warmup then ReduceLROnPlateau on validation mask mAP, EMA, early stopping.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from mmengine.config import Config

from otxlite.templates import Template

MONITOR = "coco/mask_mAP"  # validation metric that drives LR plateau, early stopping and the best checkpoint


def set_num_classes(node: Any, num_classes: int) -> None:
    """Set every ``num_classes`` in a (nested) model config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = num_classes
            else:
                set_num_classes(value, num_classes)
    elif isinstance(node, list):
        for value in node:
            set_num_classes(value, num_classes)


def pretrained_checkpoints(model: dict[str, Any]) -> list[str]:
    """Checkpoint URLs/paths of ``Pretrained`` init configs in a model config."""
    found = []
    if isinstance(model, dict):
        init = model.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            found.append(init["checkpoint"])
        for value in model.values():
            found += pretrained_checkpoints(value)
    return found


def drop_pretrained(model: dict[str, Any]) -> None:
    """Remove ``Pretrained`` init configs, so the model starts from random weights."""
    if isinstance(model, dict):
        if isinstance(model.get("init_cfg"), dict) and model["init_cfg"].get("type") == "Pretrained":
            model.pop("init_cfg")
        for value in model.values():
            drop_pretrained(value)


def load_model_config(template: Template, num_classes: int) -> tuple[dict[str, Any], list[str]]:
    """The template's MMDetection model dict (classes set) and the custom imports it needs."""
    source = Config.fromfile(str(template.model_config))
    model = copy.deepcopy(source.model.to_dict())
    set_num_classes(model, num_classes)
    imports = list(source.get("custom_imports", {}).get("imports", []))
    return model, imports


def _pipelines(input_size: list[int]) -> tuple[list[dict], list[dict]]:
    scale = tuple(input_size)  # (width, height)
    train = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
        dict(type="Resize", scale=scale, keep_ratio=False),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=scale, keep_ratio=False),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]
    return train, test


def dataloader(ann_file: Path, labels: list[str], pipeline: list[dict], batch_size: int, num_workers: int,
               shuffle: bool) -> dict[str, Any]:
    """An mmengine dataloader config over an otxlite COCO file (absolute image paths, empty images kept)."""
    return dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        sampler=dict(type="DefaultSampler", shuffle=shuffle),
        dataset=dict(
            type="QuietCocoDataset",
            data_root="",
            ann_file=str(ann_file),
            data_prefix=dict(img=""),
            metainfo=dict(classes=tuple(labels)),
            filter_cfg=dict(filter_empty_gt=False, min_size=0),
            pipeline=pipeline,
            test_mode=not shuffle,
        ),
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_runner_config(
    template: Template,
    hyper_parameters: dict[str, Any],
    labels: list[str],
    train_ann: Path,
    val_ann: Path | None,
    work_dir: Path,
    pretrained: bool = True,
    load_from: Path | None = None,
    resume: bool = False,
) -> Config:
    """The complete mmengine Config of a training run."""
    learning = hyper_parameters["learning_parameters"]
    input_size = hyper_parameters["data"]["input_size"]
    model, imports = load_model_config(template, len(labels))
    if not pretrained:
        drop_pretrained(model)
    train_pipeline, test_pipeline = _pipelines(input_size)
    workers = int(learning["num_workers"])
    batch = int(learning["batch_size"])
    epochs = int(learning["num_iters"])

    schedulers: list[dict[str, Any]] = []
    if learning["learning_rate_warmup_iters"] > 0:
        schedulers.append(dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0,
                               end=int(learning["learning_rate_warmup_iters"])))
    if learning.get("enable_reduce_lr_on_plateau", True) and val_ann is not None:
        schedulers.append(dict(type="ReduceOnPlateauLR", monitor=MONITOR, rule="greater", factor=0.1,
                               patience=max(1, int(learning["early_stop_patience"]) // 2), min_value=1e-6,
                               by_epoch=True))
    custom_hooks: list[dict[str, Any]] = []
    if learning.get("use_ema", False):
        custom_hooks.append(dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True,
                                 priority=49))
    if learning.get("enable_early_stopping", False) and val_ann is not None:
        custom_hooks.append(dict(type="EarlyStoppingHook", monitor=MONITOR, rule="greater",
                                 patience=int(learning["early_stop_patience"])))
    clip = float(learning.get("gradient_clip_norm", 0) or 0)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES") != "" and _cuda_available()

    cfg: dict[str, Any] = dict(
        default_scope="mmdet",
        custom_imports=dict(imports=["otxlite.engine.registry", *imports], allow_failed_imports=False),
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dataloader(train_ann, labels, train_pipeline, batch, workers, shuffle=True),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=1),
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(type="SGD", lr=float(learning["learning_rate"]), momentum=0.9, weight_decay=1e-4),
            clip_grad=dict(max_norm=clip, norm_type=2) if clip > 0 else None,
        ),
        param_scheduler=schedulers,
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=10),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=None,  # otxlite's RunFolderHook writes last.pth and weights.pth atomically
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=custom_hooks,
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl" if cuda else "gloo")),
        launcher="pytorch" if distributed else "none",
        # On CPU, DDP takes no device ids (mmengine passes the local rank as one by default).
        model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None) if distributed and not cuda else None,
        log_processor=dict(type="LogProcessor", window_size=10, by_epoch=True),
        log_level="INFO",
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer"),
        randomness=dict(seed=0),
        load_from=str(load_from) if load_from else None,
        resume=resume,
    )
    if val_ann is not None:
        cfg.update(
            val_dataloader=dataloader(val_ann, labels, test_pipeline, 1, workers, shuffle=False),
            val_cfg=dict(type="ValLoop"),
            val_evaluator=dict(type="InstanceSegMetric", ann_file=str(val_ann), labels=labels),
        )
    return Config(cfg)


def build_test_config(train_config: Config, ann_file: Path, labels: list[str], work_dir: Path) -> Config:
    """A config that evaluates ``train_config``'s model on ``ann_file`` (used by ``otxlite eval``)."""
    cfg = copy.deepcopy(train_config)
    input_size = list(next(step["scale"] for step in cfg.train_dataloader.dataset.pipeline if step["type"] == "Resize"))
    _, test_pipeline = _pipelines(input_size)
    cfg.work_dir = str(work_dir)
    cfg.test_dataloader = dataloader(ann_file, labels, test_pipeline, 1, 0, shuffle=False)
    cfg.test_cfg = dict(type="TestLoop")
    cfg.test_evaluator = dict(type="InstanceSegMetric", ann_file=str(ann_file), labels=labels)
    cfg.custom_hooks = []
    cfg.load_from = None
    cfg.resume = False
    cfg.launcher = "none"
    return cfg
