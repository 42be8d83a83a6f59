"""Template + hyper-parameters + prepared data -> one mmengine Config for the Runner.

Everything a run does is in this Config (saved as ``config.py`` in the run folder): the template's
recipe (augmentation, optimizer, schedule: ``otxlite.training.recipes``) plus what every run shares:
linear warmup, gradient clipping, EMA, lazy early stopping and BatchNorm statistics recomputed before
each validation (see ``otxlite.training.batchnorm``).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config

from otxlite.core.artifacts import ModelMetadata
from otxlite.training.device import cuda_settings
from otxlite.training.pretrained import COCO, IMAGENET, RANDOM
from otxlite.training.tiled_validation import tiled_loop_config
from otxlite.training.recipes import (MOSAIC_ADAMW, cosine_decay, optimizer, recipe_hooks, test_pipeline, train_pipeline,
                                    uses_mosaic, whole_image_pipeline)
from otxlite.core.errors import OtxliteError
from otxlite.core.templates import Template
from otxlite.core.tiling import TilingSettings

MONITOR = "coco/mask_mAP"  # validation metric that drives LR plateau, early stopping and the best checkpoint
MIN_ITERS_BETWEEN_VALIDATIONS = 5  # tiny datasets: validate every few epochs rather than after each iteration
MAX_VAL_INTERVAL = 5  # epochs
MIN_PATIENCE_ITERS = 300  # LR plateau and early stopping wait at least this many iterations (OTX: iteration_patience)
FIRST_LAZY_EPOCH = 3  # neither acts before this epoch, nor before the warmup has ended (OTX: LazyEarlyStopping)
MAX_BATCHNORM_BATCHES = 20  # training batches the BN statistics are recomputed over (forward only, no heads) ...
BATCHNORM_BATCHES_PER_ITER = 2  # ... at most this many per training iteration between two validations (~30 % more)


@dataclass(frozen=True)
class Schedule:
    """When validation, the LR plateau and early stopping act, in epochs and validations.

    Validating costs more than a training step on a tiny dataset, and a metric still at 0 during
    warmup must not cut the learning rate or stop training, so: validation every ``val_interval``
    epochs; plateau and early stopping only look at validations from epoch ``lazy_begin`` on, and their
    patience (counted in validations) always covers at least ``MIN_PATIENCE_ITERS`` iterations. The BN
    statistics are recomputed before each validation over ``batchnorm_batches`` training batches.
    """

    iters_per_epoch: int
    val_interval: int
    batchnorm_batches: int
    lazy_begin: int
    plateau_patience: int
    early_stop_patience: int


def training_schedule(learning: dict[str, Any], num_train_images: int, world_size: int = 1) -> Schedule:
    """The :class:`Schedule` for the template's ``learning_parameters`` and a training set size."""
    epochs = max(1, int(learning["num_iters"]))
    iters = max(1, math.ceil(num_train_images / (int(learning["batch_size"]) * world_size)))
    val_interval = min(MAX_VAL_INTERVAL, epochs, math.ceil(MIN_ITERS_BETWEEN_VALIDATIONS / iters))
    warmup_epochs = math.ceil(int(learning["learning_rate_warmup_iters"]) / iters)

    def patience(epochs_without_gain: int) -> int:
        epochs_needed = max(epochs_without_gain, math.ceil(MIN_PATIENCE_ITERS / iters))
        return max(1, math.ceil(epochs_needed / val_interval))

    early_stop = int(learning["early_stop_patience"])
    return Schedule(iters_per_epoch=iters, val_interval=val_interval,
                    batchnorm_batches=min(MAX_BATCHNORM_BATCHES, BATCHNORM_BATCHES_PER_ITER * iters * val_interval),
                    lazy_begin=max(FIRST_LAZY_EPOCH, warmup_epochs),
                    plateau_patience=patience(max(1, early_stop // 2)), early_stop_patience=patience(early_stop))


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


def apply_pretrained_start(model: dict[str, Any], start: str, coco_checkpoint: str | None) -> None:
    """Keep the init configs of one start: the whole detector from ``coco_checkpoint`` (mmengine skips the
    tensors whose shape differs, i.e. the class-specific head layers), the backbone's ImageNet weights
    of the model config, or none (random weights)."""
    if start != IMAGENET:
        drop_pretrained(model)
    if start == COCO:
        model["init_cfg"] = dict(type="Pretrained", checkpoint=coco_checkpoint)


def _types(node: Any) -> list[str]:
    """Every string ``type`` in a nested config (the registry names it asks for)."""
    if isinstance(node, dict):
        own = [node["type"]] if isinstance(node.get("type"), str) else []
        return own + [t for value in node.values() for t in _types(value)]
    if isinstance(node, list):
        return [t for value in node for t in _types(value)]
    return []


def check_model_config(template: Template) -> None:
    """Load the template's model config and check what MMDetection would only find out later: Python syntax
    (file and line), ``_base_`` files, custom imports, registered types (with the closest names), and a
    ``num_classes`` otxlite can set. Raises ``OtxliteError`` with one paragraph."""
    import difflib

    path = template.model_config
    try:
        source = Config.fromfile(str(path))
    except SyntaxError as err:
        where = err.filename if err.filename and not err.filename.startswith("<") else path
        raise OtxliteError(f"Model config {where}, line {err.lineno}: Python syntax error ({err.msg}). "
                           f"Fix that file (template {template.path}).") from err
    except FileNotFoundError as err:
        raise OtxliteError(f"Model config {path}: a file it builds on does not exist ({err}). Check its `_base_` "
                           "paths (relative to the config, or `mmdet::...` for MMDetection's own).") from err
    except Exception as err:  # mmengine raises several types for configs it cannot evaluate
        raise OtxliteError(f"Model config {path} cannot be loaded ({type(err).__name__}: {err}).") from err
    if not isinstance(source.get("model"), dict):
        raise OtxliteError(f"Model config {path} defines no `model` dict; otxlite needs MMDetection's model definition.")
    model = source.model.to_dict()
    imports = list(source.get("custom_imports", {}).get("imports", []))
    from mmengine.utils import import_modules_from_strings

    try:
        import_modules_from_strings(imports)
    except ImportError as err:
        raise OtxliteError(f"Model config {path}: custom_imports {imports} cannot be imported ({err}).") from err
    import mmcv.ops
    from mmdet.registry import MODELS, TASK_UTILS
    from mmdet.utils import register_all_modules
    from mmengine.registry import WEIGHT_INITIALIZERS

    register_all_modules(init_default_scope=False)
    registries = (MODELS, TASK_UTILS, WEIGHT_INITIALIZERS)
    known = {name for registry in registries for r in (registry, registry.parent) if r for name in r.module_dict}
    for name in _types(model):
        if name not in known and not hasattr(mmcv.ops, name):
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise OtxliteError(f"Model config {path}: type '{name}' is not registered in MMDetection, mmengine or mmcv."
                               f"{hint} Fix the `type` (a typo?) or add the module that registers it to custom_imports.")
    probe = copy.deepcopy(model)
    marker = -12345
    set_num_classes(probe, marker)
    if marker not in [v for v in _leaves(probe)]:
        raise OtxliteError(f"Model config {path}: no `num_classes` anywhere in `model`, so otxlite cannot set the number "
                           "of classes of your dataset. Use a head that takes `num_classes`.")


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


def load_model_config(template: Template, num_classes: int) -> tuple[dict[str, Any], list[str]]:
    """The template's MMDetection model dict (classes set) and the custom imports it needs."""
    source = Config.fromfile(str(template.model_config))
    model = copy.deepcopy(source.model.to_dict())
    set_num_classes(model, num_classes)
    imports = list(source.get("custom_imports", {}).get("imports", []))
    return model, imports


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
    num_train_images: int,
    pretrained_start: str = RANDOM,
    load_from: Path | None = None,
    resume: bool = False,
    tiling: TilingSettings | None = None,
    polygon_masks: bool = False,
) -> Config:
    """The complete mmengine Config of a training run (``pretrained_start``: see ``apply_pretrained_start``).
    With ``tiling``, ``train_ann`` holds the training tiles and validation tiles the whole ``val_ann`` images.
    ``polygon_masks``: keep the training masks as polygons through the augmentation (see recipes)."""
    learning = hyper_parameters["learning_parameters"]
    input_size = hyper_parameters["data"]["input_size"]
    model, imports = load_model_config(template, len(labels))
    apply_pretrained_start(model, pretrained_start, template.coco_checkpoint)
    size = (int(input_size[0]), int(input_size[1]))
    recipe = template.family.recipe
    mosaic = uses_mosaic(recipe, hyper_parameters["data"].get("augmentation", "auto"), num_train_images)
    workers = int(learning["num_workers"])
    batch = int(learning["batch_size"])
    epochs = int(learning["num_iters"])
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    schedule = training_schedule(learning, num_train_images, world_size)

    schedulers: list[dict[str, Any]] = []
    if learning["learning_rate_warmup_iters"] > 0:
        schedulers.append(dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0,
                               end=int(learning["learning_rate_warmup_iters"])))
    if recipe == MOSAIC_ADAMW:
        schedulers += cosine_decay(float(learning["learning_rate"]), epochs)
    if learning.get("enable_reduce_lr_on_plateau", True) and val_ann is not None and schedule.lazy_begin < epochs:
        schedulers.append(dict(type="ReduceOnPlateauLR", monitor=MONITOR, rule="greater", factor=0.1,
                               patience=schedule.plateau_patience, min_value=1e-6, by_epoch=True,
                               begin=schedule.lazy_begin))
    custom_hooks: list[dict[str, Any]] = [dict(type="BatchNormStatisticsHook", num_batches=schedule.batchnorm_batches),
                                          *recipe_hooks(size, epochs, mosaic, polygon_masks)]
    if learning.get("use_ema", False):
        custom_hooks.append(dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True,
                                 priority=49))
    if learning.get("enable_early_stopping", False) and val_ann is not None:
        custom_hooks.append(dict(type="LazyEarlyStoppingHook", monitor=MONITOR, rule="greater", min_delta=1e-4,
                                 patience=schedule.early_stop_patience, begin=schedule.lazy_begin))
    clip = float(learning.get("gradient_clip_norm", 0) or 0)
    optimizer_cfg, paramwise_cfg = optimizer(recipe, float(learning["learning_rate"]))
    distributed = world_size > 1
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES") != "" and _cuda_available()

    cfg: dict[str, Any] = dict(
        default_scope="mmdet",
        custom_imports=dict(imports=["otxlite.training.registry", *imports], allow_failed_imports=False),
        model=model,
        work_dir=str(work_dir),
        train_dataloader=dataloader(train_ann, labels, train_pipeline(recipe, size, mosaic, polygon_masks), batch,
                                    workers, shuffle=True),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=schedule.val_interval),
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=optimizer_cfg,
            clip_grad=dict(max_norm=clip, norm_type=2) if clip > 0 else None,
            **(dict(paramwise_cfg=paramwise_cfg) if paramwise_cfg else {}),
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
            val_dataloader=dataloader(val_ann, labels, test_pipeline(size) if tiling is None else whole_image_pipeline(),
                                      1, workers, shuffle=False),
            val_cfg=dict(type="ValLoop") if tiling is None else tiled_loop_config("val", tiling, size),
            val_evaluator=dict(type="InstanceSegMetric", ann_file=str(val_ann), labels=labels),
        )
    cuda_settings(cfg, learning.get("precision", "auto"), cuda)  # mixed precision and pinned memory on CUDA
    return Config(cfg)


def fixed_threshold(postprocessing: dict[str, Any]) -> float | None:
    """The confidence threshold saved with the model: the template's ``confidence_threshold``, or None where
    ``result_based_confidence_threshold`` keeps the F1-optimal threshold of the validation that chose the model."""
    if postprocessing["result_based_confidence_threshold"]:
        return None
    return float(postprocessing["confidence_threshold"])


def model_record(template: Template, hyper_parameters: dict[str, Any], labels: list[str], model: Any,
                 tiling: TilingSettings | None) -> ModelMetadata:
    """The model record of a training run (``model``: the run's model config); saved in every ``weights.pth``
    with the confidence threshold of its validation, then copied unchanged into the IR."""
    test_cfg = model.get("test_cfg") or {}
    final = test_cfg.get("rcnn", test_cfg)  # two-stage models: the RoI head's settings
    width, height = hyper_parameters["data"]["input_size"]
    return ModelMetadata(
        family=template.family.name,
        labels=list(labels),
        input_size=(int(width), int(height)),
        confidence_threshold=float(hyper_parameters["postprocessing"]["confidence_threshold"]),
        iou_threshold=float(final.get("nms", {}).get("iou_threshold", 0.5)),
        template_id=template.model_template_id,
        tiling=tiling,
        optimization_settings=dict(hyper_parameters["optimization"]),
    )


def build_test_config(train_config: Config, record: ModelMetadata, ann_file: Path, work_dir: Path) -> Config:
    """A config that evaluates ``train_config``'s model (whose record is ``record``) on ``ann_file`` (used by
    ``otxlite eval``); a model trained on tiles is tested on whole images, tiled and merged as the runtime does."""
    cfg = copy.deepcopy(train_config)
    cfg.work_dir = str(work_dir)
    tiling = record.tiling
    pipeline = test_pipeline(record.input_size) if tiling is None else whole_image_pipeline()
    cfg.test_dataloader = dataloader(ann_file, record.labels, pipeline, 1, 0, shuffle=False)
    cfg.test_cfg = dict(type="TestLoop") if tiling is None else tiled_loop_config("test", tiling, record.input_size)
    cfg.test_evaluator = dict(type="InstanceSegMetric", ann_file=str(ann_file), labels=record.labels)
    cfg.custom_hooks = []
    cfg.load_from = None
    cfg.resume = False
    cfg.launcher = "none"
    return cfg
