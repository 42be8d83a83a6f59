"""The readable summary every verb prints at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from otxlite.console import console


def print_summary(title: str, performance: dict[str, Any] | None, outputs: dict[str, Path]) -> None:
    """Print key metrics (if any), per-class mask mAP and the paths written."""
    if performance:
        table = Table(title=title)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in ("mask_mAP", "mask_mAP_50", "bbox_mAP", "bbox_mAP_50", "f_measure", "confidence_threshold",
                    "num_images"):
            table.add_row(key, _fmt(performance.get(key)))
        for label, values in performance.get("per_class", {}).items():
            table.add_row(f"mask_mAP of {escape(label)}", _fmt(values["mask_mAP"]))
        console.print(table)
    else:
        console.print(f"[bold]{title}[/]")
    for name, path in outputs.items():
        if Path(path).exists():
            console.print(f"  {name:<14} {path}")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
