"""One trial of a tune study: the template and hyper-parameters Optuna suggests, trained as ``otxlite train`` would
into the trial's run folder, with a hook that reports each validation to Optuna and stops the training when the
pruner says so or the study's time is up."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from mmengine.hooks import Hook

from otxlite.core.runs import this_process
from otxlite.training.config import MONITOR
from otxlite.tuning.results import PROCESS, RUN_DIR, VALUES
from otxlite.tuning.space import TemplateSpace, as_params, suggest


class DeadlineHook(Hook):
    """Raises ``optuna.TrialPruned`` at the first iteration or validation that would start after ``deadline``
    (``time.time()``): the run folder keeps its best model and the trial counts as pruned. Runs before every other
    hook, so a validation's BatchNorm statistics pass does not start after the deadline either."""

    priority = 0

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def _check(self) -> None:
        if time.time() >= self.deadline:
            raise optuna.TrialPruned("stopped at the time budget's deadline")

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._check()

    def before_val_epoch(self, runner: Any) -> None:
        self._check()

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._check()


class TrialHook(Hook):
    """Reports the best validation mask mAP so far (what the run's ``weights.pth`` holds) at each validation, with the
    seconds since training began (validations included) as the step, and raises ``optuna.TrialPruned`` when the
    pruner prunes the trial. Runs after otxlite's own hooks (RunFolderHook 48, ResultsCsvHook 70, ProgressHook 90)
    have handled the validation."""

    priority = 95

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best: float | None = None
        self.started = time.monotonic()
        self.step = 0

    def before_train(self, runner: Any) -> None:
        self.started = time.monotonic()

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        score = (metrics or {}).get(MONITOR)
        if score is None:
            return
        self.best = max(float(score), self.best if self.best is not None else -1.0)
        self.step = max(self.step + 1, round(time.monotonic() - self.started))  # one report per step
        self.trial.report(self.best, step=self.step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {self.step} s of training, at epoch {runner.epoch} "
                                     f"(mask mAP {self.best:.4f})")


def run_trial(trial: optuna.Trial, spaces: list[TemplateSpace], trials_dir: Path, deadline: float,
              train: Callable[..., Any]) -> float:
    """Train the trial's template into ``trials_dir/trial_NNNN`` with ``train(template, output=, params=,
    extra_hooks=)`` and return its best validation mask mAP (NaN, which Optuna records as a failure, if no validation
    ran)."""
    space, values = suggest(trial, spaces)
    run_dir = trials_dir / f"trial_{trial.number:04d}"
    shutil.rmtree(run_dir, ignore_errors=True)  # left by a study of this name that was deleted: not this trial's
    trial.set_user_attr(RUN_DIR, str(run_dir.resolve()))
    trial.set_user_attr(PROCESS, this_process())
    trial.set_user_attr(VALUES, values)
    hook = TrialHook(trial)
    train(str(space.template.path), output=run_dir, params=as_params(space, values),
          extra_hooks=[DeadlineHook(deadline), hook])
    return hook.best if hook.best is not None else float("nan")
