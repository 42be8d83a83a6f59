"""Finding and reading the images a user points ``-i`` at."""

from __future__ import annotations

import glob
from pathlib import Path

from otxlite.core.errors import OtxliteError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_inputs(source: str) -> tuple[list[Path], list[Path]]:
    """Image files of an image path, a folder (recursive) or a glob; also the non-image files skipped."""
    path = Path(source)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        candidates = [path]
    else:
        candidates = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not candidates:
            raise OtxliteError(f"-i {source}: no such file or folder, and no file matches it as a pattern.")
    images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p for p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        raise OtxliteError(f"-i {source}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return images, skipped

