"""Run folders: where a verb writes its outputs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

RUNS_ROOT = Path("otxlite-runs")


def run_folder(output: Path | None, verb: str) -> Path:
    """``output`` if given, else a new timestamped folder under ``otxlite-runs/``; created either way."""
    folder = Path(output) if output else RUNS_ROOT / f"{datetime.now():%Y%m%d-%H%M%S}-{verb}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
