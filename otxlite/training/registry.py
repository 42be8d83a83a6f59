"""Imported through ``custom_imports`` so the Runner (and each DDP worker) knows otxlite's hooks and metric."""

from otxlite.training import dataset, hooks, metrics  # noqa: F401
