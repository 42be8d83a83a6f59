"""The study's plots, drawn by Optuna's matplotlib visualisations: every trial's best mask mAP against its seconds of
training (what the pruner compared), and from finished trials only, as Optuna draws them, the optimization history,
the mask mAP of each template and each template's hyper-parameter importances."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

from otxlite.core.fileio import atomic_path
from otxlite.tuning.space import TEMPLATE, TemplateSpace


def _save(axes: Any, path: Path, title: str | None = None) -> None:
    import matplotlib.pyplot as plt

    if title:
        axes.set_title(title)
    figure = axes.figure
    figure.set_size_inches(8, 4.5)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    plt.close(figure)


def plot_study(study: optuna.Study, spaces: list[TemplateSpace], plots_dir: Path) -> list[str]:
    """Write the plots that the finished trials allow into ``plots_dir``; return a note for each plot left out."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*identical low and high xlims")  # one template: one column
    plots_dir.mkdir(parents=True, exist_ok=True)
    if any(trial.intermediate_values for trial in study.get_trials(deepcopy=False)):
        axes = plots.plot_intermediate_values(study)
        axes.set_xlabel("seconds of training")
        axes.set_ylabel("best validation mask mAP")
        _save(axes, plots_dir / "learning_curves.png", "each trial's best mask mAP by seconds of training")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return ["no other plots: no trial has finished"]
    _save(plots.plot_optimization_history(study, target_name="mask mAP"), plots_dir / "optimization_history.png")
    _save(plots.plot_slice(study, params=[TEMPLATE], target_name="mask mAP"), plots_dir / "templates.png",
          "mask mAP of each template")
    notes = []
    for space in spaces:
        names = [space.parameter(key) for key in space.dimensions]
        finished = [trial for trial in complete if trial.params.get(TEMPLATE) == space.template.name]
        if len(finished) < 2 or not names:
            notes.append(f"no importances of {space.template.name}: {len(finished)} finished trial(s), 2 needed")
            continue
        _save(plots.plot_param_importances(study, params=names, target_name="mask mAP"),
              plots_dir / f"importances_{space.template.name}.png")
    return notes
