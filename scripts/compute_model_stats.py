#!/usr/bin/env python
"""Compute each template's ``gigaflops`` and ``size`` and write them into the template YAML.

Usage::

    .venv/bin/python scripts/compute_model_stats.py                  # all templates, rewrite the YAMLs
    .venv/bin/python scripts/compute_model_stats.py MaskRCNN-ResNet50 # some templates (name, id or path)
    .venv/bin/python scripts/compute_model_stats.py --check          # exit 1 if a stored value is off by > 1 %
    .venv/bin/python scripts/compute_model_stats.py --check --size-only  # sizes only: no forward pass, seconds

What is counted (so the numbers compare with published ones): see ``otxlite/training/model_stats.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from otxlite.core.errors import OtxliteError  # noqa: E402
from otxlite.core.fileio import write_text_atomic  # noqa: E402
from otxlite.core.templates import list_templates, load_template  # noqa: E402
from otxlite.training.model_stats import compute  # noqa: E402

TOLERANCE = 0.01  # --check: relative difference allowed between stored and computed values
COMMENT = (
    "# gigaflops and size at data.input_size with 80 (COCO) classes, computed (not copied) by\n"
    "# scripts/compute_model_stats.py: gigaflops = GFLOPs of one image's mode='tensor' forward, one\n"
    "# multiply-add = 1 FLOP (fvcore/OTX convention); size = MB (10^6 bytes) of FP32 parameters.\n"
)


def rewrite_stats(text: str, gigaflops: float | None, size: float) -> str:
    """``text`` (a template YAML) with new ``gigaflops``/``size`` lines and the comment above them.

    ``gigaflops=None`` keeps the stored value. Every other line is kept byte for byte.
    """
    lines = text.splitlines(keepends=True)

    def index(key: str) -> int:
        found = [i for i, line in enumerate(lines) if line.startswith(f"{key}:")]
        if len(found) != 1:
            raise OtxliteError(f"expected exactly one top-level '{key}:' line, found {len(found)}")
        return found[0]

    def ending(line: str) -> str:
        return line[len(line.rstrip("\r\n")):] or "\n"

    g, s = index("gigaflops"), index("size")
    if gigaflops is not None:
        lines[g] = f"gigaflops: {gigaflops:.2f}{ending(lines[g])}"
    lines[s] = f"size: {size:.2f}{ending(lines[s])}"
    first = min(g, s)
    start = first
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    newline = ending(lines[first])
    comment = [line + newline for line in COMMENT.splitlines()]
    return "".join(lines[:start] + comment + lines[first:])


def _differs(stored: Any, computed: float) -> bool:
    if not isinstance(stored, (int, float)) or isinstance(stored, bool):
        return True
    return abs(stored - computed) > TOLERANCE * abs(computed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("templates", nargs="*", help="template names, ids or paths (default: all)")
    parser.add_argument("--check", action="store_true",
                        help=f"do not write; exit 1 if a stored value differs by more than {TOLERANCE:.0%}")
    parser.add_argument("--size-only", action="store_true", help="compute sizes only (no forward pass)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    try:
        templates = [load_template(ref) for ref in args.templates] if args.templates else list_templates()
    except OtxliteError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2

    failures = []
    print(f"{'template':26} {'input':>9} {'params':>12} {'size MB':>8} {'GFLOPs':>8}")
    for template in templates:
        stats = compute(template, size_only=args.size_only)
        width, height = template.hyper_parameters["data"]["input_size"]
        flops = "-" if stats.gigaflops is None else f"{stats.gigaflops:.2f}"
        print(f"{template.name:26} {width:>4}x{height:<4} {stats.params:>12,} {stats.size:>8.2f} {flops:>8}", flush=True)
        if stats.unsupported:
            skipped = ", ".join(f"{op} x{n}" for op, n in sorted(stats.unsupported.items()))
            print(f"    not counted: {skipped}")
        if args.check:
            checks = [("size", template.size, stats.size)]
            if stats.gigaflops is not None:
                checks.append(("gigaflops", template.gigaflops, stats.gigaflops))
            for key, stored, computed in checks:
                if _differs(stored, computed):
                    failures.append(f"{template.path}: {key} is {stored}, computed {computed:.2f}")
        else:
            path = template.path
            write_text_atomic(path, rewrite_stats(path.read_bytes().decode("utf-8"), stats.gigaflops, stats.size))
    if failures:
        print("Stored values differ from the computed ones by more than "
              f"{TOLERANCE:.0%}; run scripts/compute_model_stats.py to update them:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
