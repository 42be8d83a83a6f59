"""What a tune study leaves in its output folder: ``trials.csv``, the console table of trials, and the best trial's
run folder promoted to ``best/`` with ``performance.json`` naming its template and hyper-parameters."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import optuna
from rich.table import Table

from otxlite.core.fileio import write_json_atomic, write_text_atomic
from otxlite.core.runs import LOCK_FILE
from otxlite.tuning.space import trial_values

RUN_DIR = "run_dir"  # trial user attributes (set by otxlite.tuning.trial): its run folder, the process running it
PROCESS = "process"  # (core.runs.this_process: PID, machine, start time)
VALUES = "values"  # and its hyper-parameter values as otxlite reads them (Optuna shows a list choice as text)
SCORED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # pruned trials keep their best so far
TABLE_ROWS = 15


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, template, state, best validation mask mAP, seconds, hyper-parameters, run folder."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        template, values = trial_values(trial.params) if "template" in trial.params else ("", {})
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        rows.append({"trial": trial.number, "template": template, "state": trial.state.name,
                     "mask_mAP": round(trial.value, 5) if trial.value is not None else None,
                     "seconds": round(seconds, 1) if seconds is not None else None} | values
                    | {"host": trial.user_attrs.get(PROCESS, {}).get("host"), "run_dir": trial.user_attrs.get(RUN_DIR)})
    return rows


def write_trials_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """``trials.csv``: ``rows`` with the union of their columns (hyper-parameters differ between templates)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def trials_table(rows: list[dict[str, Any]], best: int | None) -> Table:
    """The last ``TABLE_ROWS`` trials as a rich table, the best one marked."""
    table = Table(title=f"Trials ({len(rows)})")
    params = list(dict.fromkeys(key for row in rows for key in row if "." in key))
    for column in ("trial", "template", "state", "mask mAP", "s", *(key.split(".")[-1] for key in params)):
        table.add_column(column, justify="right" if column in ("trial", "mask mAP", "s") else "left")
    for row in rows[-TABLE_ROWS:]:
        cells = [row["trial"], row["template"], row["state"].lower(), row["mask_mAP"], row["seconds"],
                 *(row.get(key) for key in params)]
        table.add_row(*("" if cell is None else f"{cell:.4g}" if isinstance(cell, float) else str(cell)
                        for cell in cells), style="bold green" if row["trial"] == best else None)
    return table


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The trial with the highest best mask mAP, finished or pruned, whose model is on this machine."""
    candidates = [trial for trial in study.get_trials(deepcopy=False, states=SCORED) if trial.value is not None
                  and (Path(trial.user_attrs.get(RUN_DIR, "")) / "models" / "weights.pth").is_file()]
    return max(candidates, key=lambda trial: (trial.value, -trial.number), default=None)


def promote(trial: optuna.trial.FrozenTrial, out: Path, study_name: str, storage: str) -> dict[str, Any]:
    """Copy ``trial``'s run folder to ``out/best`` (replacing the previous best whole) and write
    ``out/performance.json``: the winning template, hyper-parameters, mask mAP and the run's validation metrics."""
    run_dir = Path(trial.user_attrs[RUN_DIR])
    staging, best = out / "best.tmp", out / "best"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_dir, staging, ignore=shutil.ignore_patterns(LOCK_FILE))
    shutil.rmtree(best, ignore_errors=True)
    staging.rename(best)
    template, shown = trial_values(trial.params)
    validation = best / "performance.json"
    performance = {"template": template, "params": trial.user_attrs.get(VALUES, shown), "trial": trial.number, "state": trial.state.name,
                   "mask_mAP": trial.value, "weights": str(best / "models" / "weights.pth"), "study": study_name,
                   "storage": storage, "validation": json.loads(validation.read_text()) if validation.is_file() else None}
    write_json_atomic(out / "performance.json", performance)
    return performance
