"""The dataset table printed before training: one row per count, one column per subset.

Subsets are few and labels may be many, so labels are rows: the table stays narrow for any number of
labels, and a long label name folds onto a second line instead of being cut.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from otxlite.data.convert import ConversionStats
from otxlite.data.prepare import PreparedData

# Row name -> count of one subset, after the images and the instances of each label.
_COUNTS = {
    "empty images": lambda s: s.empty_images,
    "crowd regions": lambda s: s.crowd,
    "box-only annotations (skipped)": lambda s: s.box_only_skipped,
    "points and lines (skipped)": lambda s: s.other_shapes_skipped,
    "degenerate polygons (dropped)": lambda s: s.degenerate_dropped,
    "unreadable images (skipped)": lambda s: s.bad_images_skipped,
}


def _rows(data: PreparedData) -> list[tuple[str, list[int]]]:
    stats: list[ConversionStats] = [subset.stats for subset in data.subsets.values()]
    rows = [("images", [s.images for s in stats])]
    rows += [(f"instances of {escape(label)}", [s.instances.get(label, 0) for s in stats]) for label in data.labels]
    rows += [(name, [count(s) for s in stats]) for name, count in _COUNTS.items()]
    return rows


def dataset_table(data: PreparedData) -> Table:
    """Images, instances per label, empty images, crowd regions, and what was left out, per subset."""
    formats = ", ".join(f"{name}: {fmt}" for name, fmt in data.formats.items())
    table = Table(title=escape(f"Dataset ({formats}; {data.split_note})"))
    table.add_column("", overflow="fold")
    for name in data.subsets:
        table.add_column(name, justify="right", no_wrap=True)
    for name, counts in _rows(data):
        table.add_row(name, *map(str, counts))
    return table
