"""``otxlite train``: template + data -> a run folder with a trained, self-contained model.

The work is ``otxlite.training.run.train``, which ``otxlite tune`` runs for each trial too."""

from __future__ import annotations

from otxlite.training.run import TrainResult, train

__all__ = ["TrainResult", "train"]
