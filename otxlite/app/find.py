"""``otxlite find``: the templates as a table that fits the width (``COLUMNS``, 80 when piped).

Names are never wrapped or cut, so ``otxlite find | grep EfficientNet`` finds the row: where the table is
too wide, the long id and path columns go first (the caption says so), and where even the rest does not
fit, every template is one plain line with all its columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from otxlite.core.console import console as default_console
from otxlite.core.templates import TEMPLATES_ROOT

COLUMNS = ("name", "GFLOPs", "size MB", "input size", "start", "id", "path")
NARROW_DROPS = ("id", "path")  # left out, in this order, while the table is wider than the terminal
_RIGHT_ALIGNED = ("GFLOPs", "size MB")
_TITLE = "Templates: GFLOPs and size at the input size"


def template_rows(templates: list[Any]) -> list[tuple[str, ...]]:
    """One row of ``COLUMNS`` per template (start: COCO or ImageNet pretrained weights)."""
    rows = []
    for t in templates:
        size = t.hyper_parameters.get("data", {}).get("input_size")
        rows.append((t.name, f"{t.gigaflops:.1f}" if t.gigaflops else "-", f"{t.size:.1f}" if t.size else "-",
                     "x".join(map(str, size)) if size else "-", t.pretrained_start, t.model_template_id,
                     shown_path(t.path)))
    return rows


def shown_path(path: Path) -> str:
    """A shipped template as ``templates/...`` (under ``otxlite/assets``, linked at the top of a checkout);
    anything else relative to the working directory."""
    try:
        return str(Path("templates") / Path(path).resolve().relative_to(TEMPLATES_ROOT.resolve()))
    except ValueError:
        return os.path.relpath(path)


def plain_lines(rows: list[tuple[str, ...]]) -> list[str]:
    """A header and one line per row, columns padded to their widest value."""
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return ["  ".join(value.rjust(w) if name in _RIGHT_ALIGNED else value.ljust(w)
                      for name, value, w in zip(COLUMNS, row, widths)).rstrip() for row in [COLUMNS, *rows]]


def template_table(rows: list[tuple[str, ...]], console: Console) -> Table | None:
    """The widest table of ``rows`` that fits ``console`` without wrapping, or None if none does."""
    for dropped in range(len(NARROW_DROPS) + 1):
        hidden = NARROW_DROPS[:dropped]
        kept = [i for i, name in enumerate(COLUMNS) if name not in hidden]
        caption = f"{' and '.join(hidden)} hidden: COLUMNS=200 otxlite find" if hidden else None
        table = Table(title=_TITLE, caption=caption)
        for i in kept:
            table.add_column(COLUMNS[i], justify="right" if COLUMNS[i] in _RIGHT_ALIGNED else "left", no_wrap=True)
        for row in rows:
            table.add_row(*(row[i] for i in kept))
        if console.measure(table, options=console.options.update_width(10_000)).maximum <= console.width:
            return table
    return None


def print_templates(templates: list[Any], console: Console = default_console) -> None:
    """Print the templates: a table where one fits the console's width, else one plain line per template."""
    rows = template_rows(templates)
    table = template_table(rows, console)
    if table is not None:
        console.print(table)
        return
    for line in plain_lines(rows):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
