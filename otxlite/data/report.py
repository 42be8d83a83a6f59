"""The dataset table printed before training."""

from __future__ import annotations

from rich.table import Table

from otxlite.data.prepare import PreparedData


def dataset_table(data: PreparedData) -> Table:
    """Subset, images, instances per label, empty images, crowd regions, and what was left out:
    box-only annotations (skipped), degenerate polygons (dropped), unreadable images (skipped)."""
    table = Table(title=f"Dataset ({', '.join(f'{k}: {v}' for k, v in data.formats.items())}; {data.split_note})")
    table.add_column("subset")
    table.add_column("images", justify="right")
    for label in data.labels:
        table.add_column(label, justify="right")
    for column in ("empty", "crowd", "box-only", "degenerate", "bad img"):
        table.add_column(column, justify="right")
    for name, subset in data.subsets.items():
        s = subset.stats
        table.add_row(name, str(s.images), *(str(s.instances.get(label, 0)) for label in data.labels),
                      str(s.empty_images), str(s.crowd), str(s.box_only_skipped), str(s.degenerate_dropped),
                      str(s.bad_images_skipped))
    return table
