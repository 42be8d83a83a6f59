"""What the CLI prints: the readable summary every verb ends with, and the tables of optimize and benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from otxlite.core.console import console


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


def print_int8_comparison(rows: dict[str, Any]) -> None:
    """``otxlite optimize``'s FP32 vs INT8 tables (accuracy, size, latency; mask mAP per class)."""
    table = Table(title="FP32 vs INT8")
    for column in ("model", "mask mAP", "bbox mAP", ".bin MB", "latency ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in ("FP32", "INT8"):
        row = rows[name]
        table.add_row(name, f"{row['mask_mAP']:.4f}", f"{row['bbox_mAP']:.4f}", f"{row['bin_MB']:.1f}",
                      f"{row['latency_ms']:.1f}")
    console.print(table)
    classes = Table(title="mask mAP per class")
    for column in ("class", "FP32", "INT8", "change"):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for label, pair in rows["per_class_mask_mAP"].items():
        classes.add_row(label, f"{pair['FP32']:.4f}", f"{pair['INT8']:.4f}", f"{pair['INT8'] - pair['FP32']:+.4f}")
    console.print(classes)
    if "fp32_layers" in rows:
        kept = ", ".join(rows["fp32_groups"]) or "none"
        console.print(f"Layers kept in FP32 for the accuracy bound: {rows['fp32_layers']} ({kept}); "
                      f"speed-up {rows['FP32']['latency_ms'] / rows['INT8']['latency_ms']:.2f}x")


def benchmark_table(report: dict[str, Any]) -> Table:
    """The report as a rich table, the machine in its caption."""
    machine = report["machine"]
    table = Table(title=f"Benchmark on {report['test_images']} test images",
                  caption=f"{machine['cpu']}, {machine['cores']} cores, {', '.join(machine['flags']) or 'no AVX2'}")
    for column in ("form", "mask mAP", "bbox mAP", "latency p50 ms", "p90 ms", "images/s", "size MB"):
        table.add_column(column, justify="left" if column == "form" else "right", no_wrap=True)
    for name, row in report["forms"].items():
        table.add_row(name, f"{row['mask_mAP']:.4f}", f"{row['bbox_mAP']:.4f}", f"{row['latency_ms']['median']:.1f}",
                      f"{row['latency_ms']['p90']:.1f}", f"{row['images_per_s']:.2f}", f"{row['size_MB']:.1f}")
    return table
