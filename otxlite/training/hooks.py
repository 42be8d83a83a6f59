"""otxlite's mmengine hooks. Each has one job; their order relative to MMDetection's EMAHook matters.

Per epoch, with validation, the Runner calls (lower priority number first):

    train iters ...          ResultsCsvHook (70) sums losses, ProgressHook (90) advances the bar
    after_train_epoch        BatchNormStatisticsHook (47) recomputes BN statistics if no validation
                             follows, RunFolderHook (48) writes models/last.pth atomically
    before_val_epoch         BatchNormStatisticsHook (47) recomputes the BN statistics of the weights
                             about to be validated (the EMA copy if there is one),
                             EMAHook (49) swaps the EMA weights into the model
    after_val_epoch          RunFolderHook (48) writes models/weights.pth if mask mAP improved or tied
                             (the EMA weights are still in the model), EMAHook (49) swaps back,
                             ReduceOnPlateauLR and LazyEarlyStoppingHook (50) look at the metric once
                             their first epoch has passed, ResultsCsvHook (70) appends a row,
                             ProgressHook (90) prints metrics
    after_run                PlotsHook (80) draws curves and validation predictions
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import EarlyStoppingHook, Hook

from otxlite.training.batchnorm import recompute_batchnorm_statistics
from otxlite.core.artifacts import ModelMetadata, save_weights
from otxlite.training.config import MONITOR
from otxlite.core.fileio import atomic_path, write_text_atomic
from otxlite.core.images import read_image, write_image


def _unwrap(model: Any) -> Any:
    return model.module if hasattr(model, "module") else model


LAST_CHECKPOINT_INTERVAL_S = 60.0  # tiny datasets finish an epoch every few seconds: don't write last.pth each time


@HOOKS.register_module()
class BatchNormStatisticsHook(Hook):
    """Recomputes BatchNorm running statistics for the weights that are validated and saved (PreciseBN).

    Runs before EMAHook (49) swaps the averaged weights in, so it refreshes the EMA copy itself: that is
    what validation sees and what ``weights.pth`` stores. See ``otxlite.training.batchnorm`` for why.
    """

    priority = 47

    def __init__(self, num_batches: int = 20) -> None:
        self.num_batches = num_batches

    def _refresh(self, runner: Any, model: Any) -> None:
        recompute_batchnorm_statistics(model, runner.train_dataloader, self.num_batches)

    def before_val_epoch(self, runner: Any) -> None:
        ema = next((hook for hook in runner.hooks if hasattr(hook, "ema_model")), None)
        self._refresh(runner, ema.ema_model.module if ema is not None else _unwrap(runner.model))

    def after_train_epoch(self, runner: Any) -> None:
        if runner.val_loop is None:
            self._refresh(runner, _unwrap(runner.model))


@HOOKS.register_module()
class LazyEarlyStoppingHook(EarlyStoppingHook):
    """mmengine's early stopping, ignoring validations before epoch ``begin`` (warmup, first epochs)."""

    def __init__(self, begin: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.begin = begin

    def after_val_epoch(self, runner: Any, metrics: dict[str, float]) -> None:
        if runner.epoch >= self.begin:
            super().after_val_epoch(runner, metrics)


@HOOKS.register_module()
class RunFolderHook(Hook):
    """Writes ``models/last.pth`` every epoch and ``models/weights.pth`` for the best validation mask mAP, with
    the model record (``record``: a ``ModelMetadata`` as a dict) whose confidence threshold follows
    ``fixed_threshold`` (see ``saved_threshold``)."""

    priority = 48

    def __init__(self, models_dir: str, record: dict[str, Any], fixed_threshold: float | None) -> None:
        self.models_dir = Path(models_dir)
        self.record = ModelMetadata.from_dict(record)
        self.fixed_threshold = fixed_threshold
        self.best = -math.inf
        self.last_saved = -math.inf

    def after_train_epoch(self, runner: Any) -> None:
        """Save a resumable checkpoint (at most every ``LAST_CHECKPOINT_INTERVAL_S`` seconds, and after the
        last epoch); a crash while writing leaves the previous one intact."""
        last_epoch = runner.epoch + 1 >= runner.max_epochs  # runner.epoch counts finished epochs after this hook
        due = time.monotonic() - self.last_saved >= LAST_CHECKPOINT_INTERVAL_S
        if is_main_process() and (due or last_epoch):
            self.last_saved = time.monotonic()
            with atomic_path(self.models_dir / "last.pth") as tmp:
                runner.save_checkpoint(str(tmp.parent), tmp.name, save_optimizer=True, save_param_scheduler=True)
        if runner.val_loop is None or not runner.train_loop.max_epochs:
            self._save_weights(runner, {})

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Keep the best model by validation mask mAP (the later one on ties), with its F1-optimal threshold."""
        metrics = metrics or {}
        score = metrics.get(MONITOR, -1.0)
        if score >= self.best:
            self.best = score
            self._save_weights(runner, metrics)

    def _save_weights(self, runner: Any, metrics: dict[str, float]) -> None:
        if not is_main_process():
            return
        threshold = self.record.confidence_threshold
        if self.fixed_threshold is None and "coco/best_confidence_threshold" in metrics:
            threshold = float(metrics["coco/best_confidence_threshold"])
        model = _unwrap(runner.model)
        save_weights(self.models_dir / "weights.pth", model.state_dict(), runner.cfg.to_dict(),
                     replace(self.record, confidence_threshold=threshold),
                     {k.removeprefix("coco/"): v for k, v in metrics.items() if isinstance(v, (int, float))}
                     | {"epoch": runner.epoch})


@HOOKS.register_module()
class ResultsCsvHook(Hook):
    """One row per epoch in ``results.csv``: mean losses and learning rate when the epoch's training ends, the
    validation metrics added to that row when a validation follows (empty where none ran). Columns keep their
    order, that of the file being resumed included; the file is rewritten atomically."""

    priority = 70

    def __init__(self, csv_path: str) -> None:
        self.csv_path = Path(csv_path)
        self.sums: dict[str, float] = {}
        self.count = 0
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def before_train(self, runner: Any) -> None:
        """On resume (the checkpoint is loaded by now), keep the rows and columns of the epochs already done."""
        if self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                self.rows = [row for row in reader if int(row["epoch"]) <= runner.epoch]
                self.columns = list(reader.fieldnames or [])

    def before_train_epoch(self, runner: Any) -> None:
        self.sums, self.count = {}, 0

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        for key, value in (outputs or {}).items():
            if key.startswith("loss"):
                self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def after_train_epoch(self, runner: Any) -> None:
        """The epoch's row (``runner.epoch`` still counts the epochs before this one)."""
        row: dict[str, Any] = {"epoch": runner.epoch + 1}
        row.update({key: round(total / max(self.count, 1), 5) for key, total in self.sums.items()})
        row["lr"] = runner.optim_wrapper.get_lr()["lr"][0]
        self.rows.append(row)
        self._write()

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """The metrics of the validation after epoch ``runner.epoch``, into that epoch's row."""
        values = {f"val/{key.removeprefix('coco/')}": round(float(v), 5) for key, v in (metrics or {}).items()}
        row = next((r for r in reversed(self.rows) if int(r["epoch"]) == runner.epoch), None)
        if row is None:  # a validation before any training epoch (val_begin)
            row = {"epoch": runner.epoch}
            self.rows.append(row)
        row.update(values)
        self._write()

    def _write(self) -> None:
        if not is_main_process():
            return
        self.columns = list(dict.fromkeys([*self.columns, *(key for row in self.rows for key in row)]))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.csv_path, buffer.getvalue())


@HOOKS.register_module()
class PlotsHook(Hook):
    """After training: loss and mAP curves from ``results.csv``, and a few validation images with the
    predictions of the saved model (``weights_path``: the best weights, with their BN statistics)."""

    priority = 80

    def __init__(self, csv_path: str, plots_dir: str, weights_path: str, labels: list[str], num_images: int = 4) -> None:
        self.csv_path = Path(csv_path)
        self.plots_dir = Path(plots_dir)
        self.weights_path = Path(weights_path)
        self.labels = labels
        self.num_images = num_images

    def after_run(self, runner: Any) -> None:
        if not is_main_process() or not self.csv_path.is_file():
            return
        from otxlite.report.plots import plot_results

        plot_results(self.csv_path, self.plots_dir)
        if runner.val_loop is not None:
            self._draw_predictions(runner)

    def _draw_predictions(self, runner: Any) -> None:
        import cv2
        import torch

        from otxlite.core.artifacts import load_weights
        from otxlite.report.visualize import draw_instances
        from otxlite.training.tiled_validation import TiledValLoop

        model = _unwrap(runner.model)
        if self.weights_path.is_file():
            model.load_state_dict(load_weights(self.weights_path).state_dict)
        model.eval()
        predict = runner.val_loop.predict if isinstance(runner.val_loop, TiledValLoop) else model.val_step
        tiles = []
        with torch.no_grad():
            for data_batch in runner.val_loop.dataloader:
                for sample in predict(data_batch):
                    pred = sample.pred_instances
                    keep = pred.scores >= 0.3
                    image = read_image(sample.img_path)
                    tiles.append(draw_instances(
                        image, list(pred.masks[keep].cpu().numpy()), pred.bboxes[keep].cpu().numpy(),
                        pred.labels[keep].tolist(), [self.labels[i] for i in pred.labels[keep].tolist()],
                        pred.scores[keep].cpu().numpy()))
                if len(tiles) >= self.num_images:
                    break
        if tiles:
            height = 320
            row = np.concatenate([cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height)) for t in tiles[:4]],
                                 axis=1)
            with atomic_path(self.plots_dir / "val_predictions.png") as tmp:
                write_image(tmp, row)


@HOOKS.register_module()
class ProgressHook(Hook):
    """Console: a progress bar per epoch (ETA, loss, learning rate) and a one-line summary after validation."""

    priority = 90

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None

    def before_run(self, runner: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        from otxlite.core.console import console

        if is_main_process():
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[status]}"), console=console, transient=False,
                                     refresh_per_second=2)

    def _start(self, description: str, total: int) -> None:
        for task in list(self.progress.task_ids):  # finished bars are already printed
            self.progress.remove_task(task)
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, status="")

    def before_train_epoch(self, runner: Any) -> None:
        if self.progress is not None:
            self._start(f"epoch {runner.epoch + 1}/{runner.max_epochs}", len(runner.train_dataloader))

    def before_test_epoch(self, runner: Any) -> None:
        if self.progress is not None:
            self._start("evaluating", len(runner.test_dataloader))

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1)

    def after_test_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        if self.progress is not None:
            self.progress.stop()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.progress is None:
            return
        loss = float((outputs or {}).get("loss", float("nan")))
        lr = runner.optim_wrapper.get_lr()["lr"][0]
        self.progress.update(self.task, advance=1, status=f"loss {loss:.3f}  lr {lr:.2e}")

    def after_train_epoch(self, runner: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        if self.progress is None or not metrics:
            return
        from otxlite.core.console import console

        console.print(f"  validation: mask mAP {metrics.get('coco/mask_mAP', 0):.3f}  "
                      f"bbox mAP {metrics.get('coco/bbox_mAP', 0):.3f}  "
                      f"F1 {metrics.get('coco/f_measure', 0):.3f} "
                      f"@ {metrics.get('coco/best_confidence_threshold', 0):.2f}")
