"""Imported through ``custom_imports`` so the Runner (and each DDP worker) knows otxlite's hooks, metric and tiled
validation loop."""

from otxlite.training import dataset, hooks, metrics, tiled_validation  # noqa: F401
