"""Imported through ``custom_imports`` so the Runner (and each DDP worker) knows otxlite's hooks and metric."""

from otxlite.engine import dataset, hooks, metrics  # noqa: F401
