r"""Does a model trained by otxlite learn? otxlite versus plain MMDetection on small real photos.

For each real-photo set of ``tests/real_photos.py`` (photos shipped with scikit-image, instances
from classical segmentation, a validation tile kept out of training), one template is trained from
random weights (no download: the worst case, and what runs offline) twice, each in its own process,
with the same number of epochs, batch size and input size:

* ``otxlite``: ``otxlite train TEMPLATE --no-pretrained`` with ``--param`` for epochs, batch size,
  input size and warmup: otxlite's whole recipe (resize + flip, SGD, clipping, warmup, lazy LR plateau,
  EMA, BN statistics recomputed before validation, adaptive validation interval, lazy early stopping,
  best model kept). Its curve is ``results.csv``; its result is ``performance.json`` (the kept model).
* ``plain``: the same MMDetection model config through mmengine's ``Runner`` with MMDetection's own
  recipe for it, scaled to the same budget (the same warmup iterations): for Mask R-CNN and SOLOv2
  ``mask-rcnn_r50_fpn_1x_coco``'s (keep-ratio resize + flip, SGD lr 0.02, momentum 0.9, weight decay
  1e-4, steps x0.1 at 8/12 and 11/12 of the epochs), for YOLACT ``yolact_r50_1xb8-55e_coco``'s (expand,
  min-IoU crop, photometric distortion, SGD 0.001, four steps), for RTMDet-Ins ``rtmdet-ins_tiny_8xb32-300e_coco``'s
  (cached mosaic and mix-up, AdamW 0.004, cosine decay over the second half, EMA, stage 2 without
  mosaic for the last 20/300 of the epochs); validated with MMDetection's ``CocoMetric`` at the same
  epochs as otxlite. Its result is the best validation mask mAP over the run (what ``save_best`` keeps).

Mask mAP is COCO's (pycocotools) on the held-out tile in both. The ratio otxlite / plain is the
figure of merit (target >= 1.0, goal >= 1.15).

Quick check (coins only, 30 epochs; about 5 minutes on 2 cores)::

    .venv/bin/python scripts/benchmark_learning.py --sets coins --epochs 30

Full run (all sets; about 40 minutes on 2 cores)::

    .venv/bin/python scripts/benchmark_learning.py

Writes a Markdown table to stdout, ``benchmarks/learning.json`` (after every run) and
``benchmarks/learning.png`` (validation mask mAP per epoch, one panel per set).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the real-photo sets are the tests' fixtures

from otxlite.core.fileio import atomic_path, write_json_atomic  # noqa: E402
from real_photos import make_real_photo_dataset  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "learning.json"
DEFAULT_DATA = Path.home() / ".cache" / "otxlite" / "benchmark_learning"
# Per set: epochs, batch size, input size (the tiles are 128-500 px).
SETS = {"coins": (60, 2, 320), "hubble": (40, 2, 384), "ihc": (40, 2, 256)}
WARMUP_ITERS = 20


def cpu_flags() -> str:
    """The CPU's SIMD flags that matter for speed (AVX2, AVX-512, VNNI, BF16, AMX)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return " ".join(flag for flag in wanted if f" {flag}" in flags)


def otxlite_run(template: str, data: Path, out: Path, epochs: int, batch: int, size: int) -> dict[str, Any]:
    """Train with the otxlite CLI; the validation curve and the kept model's mask mAP."""
    params = [f"learning_parameters.num_iters={epochs}", f"learning_parameters.batch_size={batch}",
              f"data.input_size=[{size},{size}]", f"learning_parameters.learning_rate_warmup_iters={WARMUP_ITERS}",
              "learning_parameters.num_workers=0"]
    command = [sys.executable, "-m", "otxlite.cli", "train", template, "--train-data-roots", str(data),
               "--no-pretrained", "-o", str(out)] + [arg for p in params for arg in ("--param", p)]
    start = time.perf_counter()
    _run(command, out.with_suffix(".log"))
    with open(out / "results.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/mask_mAP")]
    performance = json.loads((out / "performance.json").read_text())
    return {"curve": [[int(r["epoch"]), float(r["val/mask_mAP"])] for r in rows],
            "mask_mAP": performance["mask_mAP"], "epochs_run": int(rows[-1]["epoch"]) if rows else 0,
            "seconds": round(time.perf_counter() - start, 1)}


def mask_rcnn_recipe(scale: tuple[int, int], epochs: int) -> dict[str, Any]:
    """MMDetection's ``mask-rcnn_r50_fpn_1x_coco`` recipe, scaled to ``epochs``."""
    return dict(
        train_pipeline=[dict(type="Resize", scale=scale, keep_ratio=True), dict(type="RandomFlip", prob=0.5)],
        test_resize=[dict(type="Resize", scale=scale, keep_ratio=True)],
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=[dict(type="MultiStepLR", begin=0, end=epochs, by_epoch=True,
                              milestones=[round(epochs * 8 / 12), round(epochs * 11 / 12)], gamma=0.1)],
        custom_hooks=[])


def yolact_recipe(scale: tuple[int, int], epochs: int) -> dict[str, Any]:
    """MMDetection's ``yolact_r50_1xb8-55e_coco`` recipe (expand, min-IoU crop, plain resize, flip, photometric
    distortion; SGD 0.001, steps x0.1 at 20, 42, 49 and 52 of 55 epochs), scaled to ``epochs``."""
    mean = [123.68, 116.78, 103.94]
    return dict(
        train_pipeline=[
            dict(type="FilterAnnotations", min_gt_bbox_wh=(4.0, 4.0)),
            dict(type="Expand", mean=mean, to_rgb=True, ratio_range=(1, 4)),
            dict(type="MinIoURandomCrop", min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
            dict(type="Resize", scale=scale, keep_ratio=False), dict(type="RandomFlip", prob=0.5),
            dict(type="PhotoMetricDistortion", brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18)],
        test_resize=[dict(type="Resize", scale=scale, keep_ratio=False)],
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=1e-3, momentum=0.9, weight_decay=5e-4)),
        param_scheduler=[dict(type="MultiStepLR", begin=0, end=epochs, by_epoch=True,
                              milestones=[round(epochs * m / 55) for m in (20, 42, 49, 52)], gamma=0.1)],
        custom_hooks=[])


def rtmdet_recipe(scale: tuple[int, int], epochs: int) -> dict[str, Any]:
    """MMDetection's ``rtmdet-ins_tiny_8xb32-300e_coco`` recipe (mosaic, mix-up, AdamW 0.004, cosine over the
    second half, EMA, the last 20/300 of the epochs without mosaic), scaled to ``epochs``."""
    pad = dict(type="Pad", size=scale, pad_val=dict(img=(114, 114, 114)))
    stage2 = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
              dict(type="RandomResize", scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
              dict(type="RandomCrop", crop_size=scale, recompute_bbox=True, allow_negative_crop=True),
              dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1)), dict(type="YOLOXHSVRandomAug"),
              dict(type="RandomFlip", prob=0.5), pad, dict(type="PackDetInputs")]
    return dict(
        train_pipeline=[
            dict(type="CachedMosaic", img_scale=scale, pad_val=114.0, max_cached_images=20, random_pop=False),
            dict(type="RandomResize", scale=(2 * scale[0], 2 * scale[1]), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type="RandomCrop", crop_size=scale), dict(type="YOLOXHSVRandomAug"),
            dict(type="RandomFlip", prob=0.5), pad,
            dict(type="CachedMixUp", img_scale=scale, ratio_range=(1.0, 1.0), max_cached_images=10, random_pop=False,
                 pad_val=(114, 114, 114), prob=0.5),
            dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1))],
        test_resize=[dict(type="Resize", scale=scale, keep_ratio=True), pad],
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=0.004, weight_decay=0.05),
                           paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True)),
        param_scheduler=[dict(type="CosineAnnealingLR", eta_min=0.004 * 0.05, begin=epochs // 2, end=epochs,
                              T_max=epochs - epochs // 2, by_epoch=True, convert_to_iter_based=True)],
        custom_hooks=[dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True,
                           priority=49),
                      dict(type="PipelineSwitchHook", switch_epoch=epochs - max(1, round(epochs * 20 / 300)),
                           switch_pipeline=stage2)])


def plain_config(template: str, data: Path, work_dir: Path, epochs: int, batch: int, size: int,
                 val_interval: int, labels: list[str]) -> Path:
    """MMDetection's own recipe for the template's model (Mask R-CNN's default, RTMDet-Ins's or YOLACT's), as a
    config file."""
    from mmengine.config import Config

    from otxlite.training.config import drop_pretrained, load_model_config
    from otxlite.training.recipes import MOSAIC_ADAMW
    from otxlite.core.templates import load_template

    chosen = load_template(template)
    model, imports = load_model_config(chosen, len(labels))
    drop_pretrained(model)
    if chosen.family.recipe == MOSAIC_ADAMW:
        recipe = rtmdet_recipe((size, size), epochs)
    elif model["type"] == "YOLACT":
        recipe = yolact_recipe((size, size), epochs)
    else:
        recipe = mask_rcnn_recipe((size, size), epochs)
    load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True)]
    train_pipeline = [*load, *recipe["train_pipeline"], dict(type="PackDetInputs")]
    test_pipeline = [dict(type="LoadImageFromFile"), *recipe["test_resize"],
                     dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                     dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape",
                                                           "scale_factor"))]

    def loader(subset: str, pipeline: list[dict], size_: int, shuffle: bool) -> dict[str, Any]:
        return dict(batch_size=size_, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=shuffle),
                    dataset=dict(type="CocoDataset", data_root=str(data), metainfo=dict(classes=tuple(labels)),
                                 ann_file=f"annotations/instances_{subset}.json",
                                 data_prefix=dict(img=f"images/{subset}/"), pipeline=pipeline,
                                 filter_cfg=dict(filter_empty_gt=False), test_mode=not shuffle))

    cfg = Config(dict(
        default_scope="mmdet", custom_imports=dict(imports=imports, allow_failed_imports=False), model=model,
        work_dir=str(work_dir), train_dataloader=loader("train", train_pipeline, batch, True),
        val_dataloader=loader("val", test_pipeline, 1, False),
        val_evaluator=dict(type="CocoMetric", ann_file=str(data / "annotations" / "instances_val.json"),
                           metric=["bbox", "segm"]),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=val_interval),
        val_cfg=dict(type="ValLoop"),
        optim_wrapper=recipe["optim_wrapper"],
        param_scheduler=[dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=WARMUP_ITERS),
                         *recipe["param_scheduler"]],
        custom_hooks=recipe["custom_hooks"],
        default_hooks=dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=10),
                           param_scheduler=dict(type="ParamSchedulerHook"), checkpoint=None,
                           sampler_seed=dict(type="DistSamplerSeedHook")),
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="gloo")),
        log_processor=dict(type="LogProcessor", window_size=10, by_epoch=True), randomness=dict(seed=0),
    ))
    path = work_dir / "plain_config.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return path


def plain_run(template: str, data: Path, out: Path, epochs: int, batch: int, size: int, val_interval: int,
              labels: list[str]) -> dict[str, Any]:
    """Train with plain mmengine + MMDetection; the validation curve and its best mask mAP."""
    config = plain_config(template, data, out, epochs, batch, size, val_interval, labels)
    code = ("import sys; from mmengine.config import Config; from mmengine.runner import Runner; "
            "Runner.from_cfg(Config.fromfile(sys.argv[1])).train()")
    start = time.perf_counter()
    failed = None
    try:
        _run([sys.executable, "-c", code, str(config)], out.with_suffix(".log"))
    except SystemExit as err:  # e.g. MMDetection's YOLACT stops on NaN scores: its recipe has no gradient clipping
        failed = str(err).splitlines()[-1]
        print(f"  plain run failed: {failed}", flush=True)
    scalars = sorted(out.glob("*/vis_data/scalars.json"))
    curve = [[int(e["step"]), float(e["coco/segm_mAP"])] for e in map(json.loads, scalars[-1].read_text().splitlines())
             if "coco/segm_mAP" in e] if scalars else []
    return {"curve": curve, "mask_mAP": max((m for _, m in curve), default=0.0),
            "last_mask_mAP": curve[-1][1] if curve else 0.0, "epochs_run": curve[-1][0] if failed and curve else epochs,
            "seconds": round(time.perf_counter() - start, 1), "failed": failed}


def _run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO),
                              env={**os.environ, "COLUMNS": "120"}).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"{command[:4]} failed (exit {code}); log {log}:\n{tail}")


def plot(results: dict[str, Any], path: Path) -> None:
    """One panel per set: validation mask mAP per epoch, otxlite and plain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(results["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for side, style in (("otxlite", "-o"), ("plain", "--s")):
            curve = results["sets"][name].get(side, {}).get("curve", [])
            if curve:
                ax.plot(*zip(*curve), style, markersize=3, label=f"{side} ({results['sets'][name][side]['mask_mAP']:.3f})")
        ax.set_title(f"{name}: {results['template']}, random init", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val mask mAP")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def table(results: dict[str, Any]) -> str:
    lines = ["| set | epochs x batch, input | otxlite mask mAP (epochs run) | plain best (last) | otxlite / plain |",
             "|---|---|---|---|---|"]
    for name, row in results["sets"].items():
        if "plain" not in row or "otxlite" not in row:
            continue
        otx, plain = row["otxlite"], row["plain"]
        if plain["mask_mAP"] > 0:
            ratio = f"{otx['mask_mAP'] / plain['mask_mAP']:.2f}"
        else:
            ratio = "both 0" if otx["mask_mAP"] == 0 else "plain 0"
        failed = f", failed: {plain['failed']}" if plain.get("failed") else ""
        lines.append(f"| {name} | {row['epochs']} x {row['batch']}, {row['size']} px | {otx['mask_mAP']:.3f} "
                     f"({otx['epochs_run']}) | {plain['mask_mAP']:.3f} ({plain['last_mask_mAP']:.3f}{failed}) | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="MaskRCNN-EfficientNetB2B")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--epochs", type=int, help="override every set's epochs")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    from otxlite.training.config import training_schedule
    from otxlite.core.templates import load_template

    results: dict[str, Any] = {"template": args.template, "cpu": cpu_flags(), "cores": os.cpu_count(), "sets": {}}
    for name in args.sets:
        epochs, batch, size = SETS[name]
        epochs = args.epochs or epochs
        data = make_real_photo_dataset(name, args.data / name)
        train = json.loads((data / "annotations" / "instances_train.json").read_text())
        labels = [c["name"] for c in train["categories"]]
        learning = {**load_template(args.template).hyper_parameters["learning_parameters"], "num_iters": epochs,
                    "batch_size": batch, "learning_rate_warmup_iters": WARMUP_ITERS}
        val_interval = training_schedule(learning, len(train["images"])).val_interval
        row = results["sets"][name] = {"epochs": epochs, "batch": batch, "size": size, "val_interval": val_interval}
        runs = args.data / "runs" / name
        shutil.rmtree(runs, ignore_errors=True)
        print(f"{name}: otxlite ...", flush=True)
        row["otxlite"] = otxlite_run(args.template, data, runs / "otxlite", epochs, batch, size)
        write_json_atomic(args.output, results)
        print(f"{name}: plain ...", flush=True)
        row["plain"] = plain_run(args.template, data, runs / "plain", epochs, batch, size, val_interval, labels)
        write_json_atomic(args.output, results)
        plot(results, args.output.with_suffix(".png"))
    print(f"{args.template}, random init; CPU: {results['cpu']}, {results['cores']} cores")
    print(table(results))


if __name__ == "__main__":
    main()
