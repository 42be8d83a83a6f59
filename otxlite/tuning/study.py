"""The Optuna study of ``otxlite tune``: its storage (an SQLite file, or any database Optuna's RDB storage takes,
such as PostgreSQL, which several processes share), TPE sampling and successive halving in seconds of training."""

from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any

import optuna

from otxlite.core.console import is_verbose
from otxlite.core.errors import OtxliteError
from otxlite.core.runs import process_is_gone
from otxlite.tuning.results import PROCESS
from otxlite.tuning.space import TEMPLATE

HEARTBEAT_S = 10  # a running trial writes a heartbeat this often; one silent for GRACE_S was killed: it is failed
GRACE_S = 30
STARTUP_TRIALS = 5  # random trials before TPE models the results
FIRST_RUNG_S = 30  # trials are compared after 30, 90, 270, 810, ... seconds of training
REDUCTION_FACTOR = 3  # successive halving keeps the best third at each rung
SCORE_STEP = 0.01  # rungs compare mask mAP in whole hundredths: finer differences are a small validation set's noise
CONNECT_TIMEOUT_S = 10
CREATE_ATTEMPTS = 5  # processes starting on a new database at once race to create its tables and types
DUPLICATE_SQLSTATES = {"23505", "42P07", "42710"}  # PostgreSQL: unique violation, duplicate table, duplicate object
SETUP = "otxlite_setup"  # study user attribute: the templates, fixed parameters and search spaces


def shown_url(url: str) -> str:
    """``url`` with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def lost_creation_race(err: Exception) -> bool:
    """Whether ``err`` says another process created a table, type or row of the schema first (they exist now)."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(err, DBAPIError):
        return False
    return getattr(err.orig, "sqlstate", None) in DUPLICATE_SQLSTATES or "already exists" in str(err.orig)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to ``url`` (created if new), with heartbeats so a killed process's running trial is failed later."""
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.INFO if is_verbose() else optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if url.startswith("postgresql") else {}
    try:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
            except SQLAlchemyError as err:
                if not lost_creation_race(err) or attempt + 1 == CREATE_ATTEMPTS:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError as err:
        raise OtxliteError(f"--storage {shown_url(url)}: its database driver is not installed ({err}). For "
                           "PostgreSQL, install otxlite's postgres extra, or: pip install psycopg psycopg-binary") from None
    except (SQLAlchemyError, ValueError) as err:
        reason = str(err).strip().splitlines()[0]
        raise OtxliteError(f"--storage {shown_url(url)}: cannot open the study database ({reason}). Give a reachable "
                           "database URL, e.g. postgresql://user:password@host:5432/db, or leave --storage out for "
                           "an SQLite file in the output folder.") from None


class PerTemplatePruner(optuna.pruners.BasePruner):
    """Optuna's successive halving, a trial compared at each rung only with the trials of its own template, in whole
    hundredths of mask mAP. Learning curves of different models differ in shape: from random weights Mask R-CNN scores
    0 for its first ~15 epochs and then overtakes RTMDet-Ins, so at equal seconds a rung shared by both templates
    would prune every Mask R-CNN trial before it could show what it learns; and on that plateau 0.006 against 0.001
    is noise, not a ranking. Which template is worth its budget is the sampler's to learn from the final scores."""

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        judged = copy.copy(trial)
        judged.intermediate_values = {step: in_hundredths(value) for step, value in trial.intermediate_values.items()}
        return self.pruner.prune(_TrialsOfTemplate(study, trial.params.get(TEMPLATE)), judged)


def in_hundredths(score: float) -> float:
    """``score`` rounded down to a multiple of ``SCORE_STEP`` (NaN stays NaN: the pruner prunes it)."""
    return score if math.isnan(score) else math.floor(round(score / SCORE_STEP, 6)) * SCORE_STEP


class _TrialsOfTemplate:
    """``study`` as the pruner sees it when judging a trial of ``template``: only that template's trials."""

    def __init__(self, study: optuna.Study, template: str | None) -> None:
        self.study = study
        self.template = template

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        return [trial for trial in self.study.get_trials(deepcopy=deepcopy, states=states)
                if trial.params.get(TEMPLATE) == self.template]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.study, name)


def open_study(storage: optuna.storages.RDBStorage, name: str, setup: dict[str, Any],
               first_trials: list[dict[str, Any]]) -> optuna.Study:
    """Create study ``name`` in ``storage`` with ``first_trials`` (Optuna parameters) queued, or continue it. A study
    started with other templates, ``--param``s or search spaces is refused: its trials would not be comparable.

    Trials report at seconds of training (``tuning.trial.TrialHook``), so the pruner's rungs compare the trials of a
    template at equal compute, whatever their input size or epoch count: an epoch at 1024 px costs several at 320 px,
    and a wall-clock budget is what the study spends."""
    sampler = optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, multivariate=True, group=True)
    pruner = PerTemplatePruner(optuna.pruners.SuccessiveHalvingPruner(min_resource=FIRST_RUNG_S,
                                                                      reduction_factor=REDUCTION_FACTOR))
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    recorded = study.user_attrs.get(SETUP)
    if recorded is None:
        study.set_user_attr(SETUP, setup)
        for params in first_trials:
            study.enqueue_trial(params, skip_if_exists=True)
    elif recorded != setup:
        raise OtxliteError(
            f"The study '{name}' in {shown_url(storage.url)} was started with other templates, --param or search "
            f"ranges ({recorded}); this run asks for {setup}. Rerun with the same templates and options to continue "
            "it, or start another study with --study NAME (or another -o).")
    return study


def fail_trials_of_ended_processes(study: optuna.Study) -> None:
    """Fail the running trials whose process, on this machine, has ended (killed, crashed): at once, where the
    heartbeats would take ``GRACE_S``. A running trial of a live process or another machine is left to them."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if process_is_gone(trial.user_attrs.get(PROCESS, {})):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
