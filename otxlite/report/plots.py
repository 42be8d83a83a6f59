"""Training curves drawn from ``results.csv`` (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

from otxlite.core.fileio import atomic_path


def plot_results(csv_path: Path, out_dir: Path) -> list[Path]:
    """Draw ``loss.png`` (every loss column) and ``metrics.png`` (validation mAPs) from a results CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    epochs = [int(row["epoch"]) for row in rows]
    groups = {
        "loss.png": ("Training losses", [c for c in rows[0] if c.startswith("loss")]),
        "metrics.png": ("Validation metrics", [c for c in rows[0] if c.startswith("val/") and "/" not in c[4:]]),
    }
    written = []
    for name, (title, columns) in groups.items():
        if not columns:
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for column in columns:  # validation may skip epochs: each curve joins the epochs that have a value
            points = [(epoch, float(row[column])) for epoch, row in zip(epochs, rows) if row.get(column) not in (None, "")]
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3,
                    label=column.removeprefix("val/"))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_path(out_dir / name) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(out_dir / name)
    return written
