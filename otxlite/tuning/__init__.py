"""Hyper-parameter and template search with Optuna (``otxlite tune``)."""
