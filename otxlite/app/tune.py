"""``otxlite tune``: one Optuna study over templates and their hyper-parameters within a wall-clock budget; the best
trial's run folder becomes ``OUT/best``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from otxlite.core.console import console
from otxlite.core.errors import OtxliteError
from otxlite.core.runs import check_run_folder_free, run_folder, run_folder_lock
from otxlite.data.formats import DataOptions

DEFAULT_STUDY = "otxlite-tune"
STORAGE_FILE = "study.db"


@dataclass
class TuneResult:
    """Where the study's outputs are, and the winner (``performance.json``'s content), if any trial scored."""

    out: Path
    trials: int
    best: dict[str, Any] | None
    notes: list[str]


def reserve_s(budget: float) -> float:
    """Seconds kept at the end of the budget for stopping the last trial (its current iteration, or the start of a
    trial begun just before: data conversion and the model, slower on a busy machine) and writing the outputs."""
    return min(90.0, max(20.0, 0.15 * budget))


def tune(templates: list[str], train_root: Path, *, time_budget: float, val_root: Path | None = None,
         trials: int | None = None, storage: str | None = None, study_name: str = DEFAULT_STUDY,
         params: list[str] | None = None, hpo: list[str] | None = None, output: Path | None = None,
         pretrained: bool = True, data_options: DataOptions = DataOptions(), device: str = "auto") -> TuneResult:
    """Search ``templates`` and their ``hpo:`` spaces for the best validation mask mAP until ``time_budget`` seconds
    have passed (or ``trials`` trials of the study have finished or been pruned). Rerunning with the same ``output``
    (or ``storage`` and ``study_name``) continues the study."""
    deadline = time.time() + time_budget - reserve_s(time_budget)
    if time_budget <= 0:
        raise OtxliteError(f"--time-budget {time_budget:g}: give a positive number of seconds, e.g. --time-budget 3600.")
    if trials is not None and trials < 1:
        raise OtxliteError(f"--trials {trials}: give at least 1 (or leave it out: as many trials as the budget allows).")
    from otxlite.data.formats import check_folder, detect_format
    from otxlite.tuning.space import build_spaces

    spaces = build_spaces(templates, params or [], hpo or [])
    for option, root in (("--train-data-roots", train_root), ("--val-data-roots", val_root)):
        if root is not None:
            check_folder(Path(root), option)
            if data_options.format is None:  # a folder no trial could read stops here, before the study is made
                detect_format(Path(root))
    check_run_folder_free(output)
    from otxlite.tuning.study import open_storage, shown_url

    opened = open_storage(storage) if storage else None  # an unreachable database stops here: no output folder yet
    out = run_folder(output, "tune")
    with run_folder_lock(out, "tune"):
        opened = opened or open_storage(f"sqlite:///{(out / STORAGE_FILE).resolve()}")
        from otxlite.training.run import train

        train_trial = partial(train, train_root=train_root, val_root=val_root, pretrained=pretrained,
                              data_options=data_options, device=device)
        return _run_study(opened, study_name, spaces, out, deadline, trials, train_trial, shown_url(opened.url))


def _run_study(storage: Any, study_name: str, spaces: list[Any], out: Path, deadline: float, trials: int | None,
               train_trial: Any, shown_storage: str) -> TuneResult:
    """Optimize until the deadline or the trial count, writing ``trials.csv`` and the table after every trial, then
    the plots and the promoted best model (also when interrupted, before saying how to continue)."""
    import optuna

    from otxlite.training.run import TrainingInterrupted
    from otxlite.training.runner import sigterm_as_interrupt
    from otxlite.tuning.results import best_trial, trial_rows, trials_table, write_trials_csv
    from otxlite.tuning.space import first_params
    from otxlite.tuning.study import fail_trials_of_ended_processes, open_study
    from otxlite.tuning.trial import run_trial

    setup = {space.template.name: space.describe() for space in spaces}
    study = open_study(storage, study_name, setup, first_params(spaces))
    fail_trials_of_ended_processes(study)  # a killed earlier run's trial: failed before this run counts the study
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=counted))
    console.print(f"Study [bold]{study_name}[/] in {shown_storage}: {len(study.trials)} trials so far; "
                  f"searching {', '.join(setup)} until {time.strftime('%H:%M:%S', time.localtime(deadline))}"
                  + (f" or {trials} trials" if trials else ""))

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        rows = trial_rows(study)
        write_trials_csv(rows, out / "trials.csv")
        best = best_trial(study)
        console.print(trials_table(rows, best.number if best else None))

    callbacks = [after_trial] + ([optuna.study.MaxTrialsCallback(trials, states=counted)] if trials else [])
    interrupted = False
    try:
        with sigterm_as_interrupt():
            if (trials is None or done < trials) and time.time() < deadline:
                study.optimize(partial(run_trial, spaces=spaces, trials_dir=out / "trials", deadline=deadline,
                                       train=train_trial),
                               n_trials=trials - done if trials else None, timeout=deadline - time.time(),
                               callbacks=callbacks)
    except (KeyboardInterrupt, TrainingInterrupted):
        interrupted = True
    result = _finish(study, spaces, out, shown_storage)
    if interrupted:
        raise OtxliteError(f"Tuning interrupted; the study keeps its {result.trials} trials. Rerun the same command "
                           "to continue it.") from None
    return result


def _finish(study: Any, spaces: list[Any], out: Path, shown_storage: str) -> TuneResult:
    """Fail the trials of killed processes, then write ``trials.csv``, the plots, ``best/`` and ``performance.json``."""
    from optuna.storages import fail_stale_trials

    from otxlite.tuning.plots import plot_study
    from otxlite.tuning.results import best_trial, promote, trial_rows, write_trials_csv

    fail_stale_trials(study)
    rows = trial_rows(study)
    write_trials_csv(rows, out / "trials.csv")
    notes = plot_study(study, spaces, out / "plots")
    best = best_trial(study)
    performance = promote(best, out, study.study_name, shown_storage) if best is not None else None
    if performance is None:
        notes.append("no trial validated a model on this machine: nothing promoted to best/")
    return TuneResult(out=out, trials=len(rows), best=performance, notes=notes)
