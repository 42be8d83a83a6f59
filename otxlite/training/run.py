"""Training one template on a dataset into a run folder: what ``otxlite train`` and each trial of ``otxlite tune`` run."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from otxlite.core.console import console, err_console
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import write_json_atomic, write_text_atomic
from otxlite.core.model_files import check_checkpoint
from otxlite.core.runs import check_run_folder_free, run_folder, run_folder_lock
from otxlite.core.templates import apply_overrides, load_template
from otxlite.core.tiling import AUTO, tiling_settings
from otxlite.data.formats import DataOptions


class TrainingInterrupted(OtxliteError):
    """Ctrl-C or SIGTERM stopped training; the message says how to resume."""


@dataclass
class TrainResult:
    """Where a finished training run put its outputs, and its best validation metrics."""

    run_dir: Path
    weights: Path
    performance: dict[str, Any] | None


def _report_head_reinit(runner: Any, checkpoint_path: Path) -> None:
    """Tell the user which tensors of ``--load-weights`` do not fit the model (they are re-initialised)."""
    import pickle

    import torch

    try:
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).split("WeightsUnpickler error: ")[-1].split(".")[0]
        raise OtxliteError(
            f"--load-weights {checkpoint_path}: the file holds Python objects besides tensors ({reason}), and "
            "otxlite runs no code from a file it did not write. Use an otxlite weights.pth or an MMDetection "
            "checkpoint (state_dict and meta); to continue your own run from its last.pth, use --resume-from."
        ) from None
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise OtxliteError(f"--load-weights {checkpoint_path}: this is not a readable PyTorch checkpoint "
                           f"({type(err).__name__}: {err}).") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else {}
    model_state = runner.model.state_dict()
    mismatched = [k for k, v in state.items() if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)]
    missing = [k for k in model_state if k not in state]
    if mismatched:
        console.print(f"--load-weights: {len(mismatched)} tensors differ in shape (other classes), "
                      f"so these are re-initialised: {', '.join(sorted(mismatched)[:6])}{' ...' if len(mismatched) > 6 else ''}")
    if len(missing) == len(model_state):
        raise OtxliteError(f"--load-weights {checkpoint_path}: none of its tensors belong to this template's model. "
                           "Use a checkpoint of the same architecture.")


def train(
    template: str,
    train_root: Path,
    *,
    val_root: Path | None = None,
    output: Path | None = None,
    params: list[str] | None = None,
    load_weights: Path | None = None,
    resume_from: Path | None = None,
    pretrained: bool = True,
    data_options: DataOptions = DataOptions(),
    skip_bad_images: bool = False,
    extra_hooks: Sequence[Any] = (),
    validate: bool = True,
    device: str = "auto",
) -> TrainResult:
    """Train ``template`` on ``train_root`` with mmengine's Runner; the README describes the run folder.

    Extension points (the benchmarks use them): ``extra_hooks``, mmengine ``Hook`` objects registered on the
    runner besides otxlite's own; ``validate=False`` trains without a validation loop. ``device``: auto, cuda
    or cpu (``otxlite.training.device.use_device``), checked once the template and ``params`` are valid."""
    chosen = load_template(template)
    hyper_parameters = apply_overrides(chosen.hyper_parameters, params or [], chosen.family.input_size_multiple)
    from otxlite.training.device import check_precision, use_device

    check_precision(hyper_parameters["learning_parameters"].get("precision", "auto"), use_device(device) == "cuda")
    from otxlite.data.formats import check_folder

    check_folder(Path(train_root), "--train-data-roots")
    if val_root is not None:
        check_folder(Path(val_root), "--val-data-roots")
    if resume_from is not None and not Path(resume_from).is_file():
        raise OtxliteError(f"--resume-from {resume_from}: the file does not exist. Give the models/last.pth of the run.")
    for option, checkpoint in (("--resume-from", resume_from), ("--load-weights", load_weights)):
        if checkpoint is not None:
            check_checkpoint(Path(checkpoint), option)
    if output is None and resume_from is not None:
        output = Path(resume_from).resolve().parent.parent
    from otxlite.training.config import check_model_config

    check_model_config(chosen)
    from otxlite.data.labels import save_label_schema
    from otxlite.data.prepare import convert_training_data, keep_polygon_masks
    from otxlite.data.report import dataset_table
    from otxlite.data.tiling import object_sizes, tile_training_data

    console.print(f"Template [bold]{chosen.name}[/] ({chosen.path})")
    check_run_folder_free(output)
    converted = convert_training_data(Path(train_root), Path(val_root) if val_root else None, data_options,
                                      skip_bad_images)  # a bad dataset stops here: no run folder yet
    run_dir = run_folder(output, "train")
    with run_folder_lock(run_dir, "train"):
        models_dir = run_dir / "models"
        console.print(f"Run folder [bold]{run_dir}[/]")
        data = converted.write(run_dir / "data")
        del converted
        console.print(dataset_table(data))
        save_label_schema(data.labels, models_dir / "label_schema.json")
        tiling = tiling_settings(hyper_parameters, object_sizes(data.subsets["train"].ann_file))
        if tiling is not None:
            automatic = hyper_parameters["tiling"]["tile_size"] == AUTO
            auto = " (auto: from the training objects' sizes)" if automatic else ""
            data, cut = tile_training_data(data, tiling, run_dir / "data" / "tiles")
            console.print(f"Tiling: {tiling.tile_size} px tiles{auto}, overlap {tiling.overlap:g}; {cut}. Validation "
                          "tiles the whole validation images and merges, as eval, predict and serve do.")

        from otxlite.training.checkpoint import trusted_mmengine_checkpoints
        from otxlite.training.config import (build_runner_config, fixed_threshold, load_model_config, model_record,
                                             pretrained_checkpoints)
        from otxlite.training.pretrained import RANDOM, choose_pretrained_start
        from otxlite.training.recipes import MOSAIC_ADAMW, describe_augmentation
        from otxlite.training.runner import build_runner, sigterm_as_interrupt

        start = RANDOM
        if pretrained and load_weights is None and resume_from is None:
            model, _ = load_model_config(chosen, len(data.labels))
            start = choose_pretrained_start(chosen.coco_checkpoint, pretrained_checkpoints(model))
            if start != RANDOM:
                console.print(f"Starting from {start}-pretrained weights.")
        elif not pretrained:
            err_console.print("[yellow]Warning:[/] --no-pretrained: training starts from random weights.")
        cfg = build_runner_config(
            chosen, hyper_parameters, data.labels, data.subsets["train"].ann_file, data.subsets["val"].ann_file
            if validate and data.subsets["val"].stats.images else None, run_dir / "logs",
            num_train_images=data.subsets["train"].stats.images, pretrained_start=start,
            load_from=resume_from or load_weights, resume=resume_from is not None, tiling=tiling,
            polygon_masks=keep_polygon_masks(data.subsets["train"].ann_file,
                                             tuple(hyper_parameters["data"]["input_size"])))
        if chosen.family.recipe == MOSAIC_ADAMW:
            console.print(describe_augmentation(hyper_parameters["data"].get("augmentation", "auto"),
                                                data.subsets["train"].stats.images))
        threshold = fixed_threshold(hyper_parameters["postprocessing"])
        record = model_record(chosen, hyper_parameters, data.labels, cfg.model, tiling)
        cfg.custom_hooks += [
            dict(type="RunFolderHook", models_dir=str(models_dir), record=record.to_dict(), fixed_threshold=threshold),
            dict(type="ResultsCsvHook", csv_path=str(run_dir / "results.csv")),
            dict(type="PlotsHook", csv_path=str(run_dir / "results.csv"), plots_dir=str(run_dir / "plots"),
                 weights_path=str(models_dir / "weights.pth"), labels=data.labels),
            dict(type="ProgressHook"),
        ]
        if cfg.get("val_evaluator"):  # report/: the evaluation report of the validation whose model is weights.pth
            cfg.val_evaluator.update(report_dir=str(run_dir / "report"), report_kept_only=True,
                                     confidence_threshold=threshold)
        write_text_atomic(run_dir / "config.py", cfg.pretty_text)
        runner = build_runner(cfg)
        for hook in extra_hooks:
            runner.register_hook(hook)
        if load_weights is not None:
            _report_head_reinit(runner, Path(load_weights))
        try:
            # mmengine's own resume checkpoints need a few more classes (and getattr): only for the user's own run.
            trusted = trusted_mmengine_checkpoints() if resume_from is not None else nullcontext()
            with sigterm_as_interrupt(), trusted:
                runner.train()
        except KeyboardInterrupt:
            last = models_dir / "last.pth"
            hint = (f"Resume with: otxlite train {template} --train-data-roots {train_root} --resume-from {last}"
                    if last.is_file() else "No epoch had finished, so there is nothing to resume.")
            raise TrainingInterrupted(f"Training interrupted. {hint}") from None
        from mmengine.dist import barrier, is_main_process

        barrier()  # with DDP, rank 0 has written weights.pth once every rank is here
        if not is_main_process():
            return TrainResult(run_dir=run_dir, weights=models_dir / "weights.pth", performance=None)
        return _finish(run_dir, models_dir)


def _finish(run_dir: Path, models_dir: Path) -> TrainResult:
    """Write ``performance.json`` from the best model's validation metrics."""
    from otxlite.core.artifacts import load_weights
    from otxlite.core.coco_metrics import metrics_from_flat, performance_report

    weights = models_dir / "weights.pth"
    loaded = load_weights(weights)
    performance = None
    if "mask_mAP" in loaded.metrics:
        performance = performance_report(metrics_from_flat(loaded.metrics), loaded.record.confidence_threshold,
                                         "weights.pth")
        write_json_atomic(run_dir / "performance.json", performance)
    return TrainResult(run_dir=run_dir, weights=weights, performance=performance)
