"""Finding the images a user points ``-i`` at: an image, a folder, a glob or ``@list.txt``; each with its name."""

from __future__ import annotations

import glob
import itertools
from dataclasses import dataclass
from pathlib import Path

from otxlite.core.errors import OtxliteError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class InputImage:
    """An image file and its name in the outputs (``filename`` of predictions.json, the key a resumed run skips):
    the path relative to the folder or the glob's fixed part, the line of a list file as written, or the file's
    own name."""

    name: str
    path: Path


def list_inputs(source: str) -> tuple[list[Path], list[Path]]:
    """Image files of ``source`` (see ``named_inputs``); also the non-image files skipped."""
    images, skipped = named_inputs(source)
    return [image.path for image in images], skipped


def named_inputs(source: str) -> tuple[list[InputImage], list[Path]]:
    """The images of an image path, a folder (recursive), a glob (``**`` recurses) or ``@list.txt`` (one path a
    line, relative to the list's folder; blank lines and ``#`` comments ignored), sorted by name for all but a
    list (its own order); also the non-image files skipped."""
    path = Path(source)
    if source.startswith("@"):
        candidates = _listed(Path(source[1:]))
    elif path.is_dir():
        candidates = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        candidates = [(path.name, path)]
    else:
        root = _fixed_part(source)
        candidates = sorted((Path(p).relative_to(root).as_posix(), Path(p))
                            for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not candidates:
            raise OtxliteError(f"-i {source}: no such file or folder, and no file matches it as a pattern.")
    images = [InputImage(name, p) for name, p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p for _, p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        raise OtxliteError(f"-i {source}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return images, skipped


def _fixed_part(pattern: str) -> Path:
    """The folder of a glob before its first wildcard: ``photos/2024`` of ``photos/2024/**/*.jpg``."""
    fixed = list(itertools.takewhile(lambda part: not GLOB_CHARACTERS & set(part), Path(pattern).parts))
    return Path(*fixed) if fixed else Path(".")


def _listed(list_file: Path) -> list[tuple[str, Path]]:
    """(name, path) of each line of a list file, first occurrence of a line kept; every named file must exist."""
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise OtxliteError(f"-i @{list_file}: cannot read the list file ({err}). Give a text file with one image "
                           "path a line.") from err
    names = list(dict.fromkeys(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")))
    if not names:
        raise OtxliteError(f"-i @{list_file}: the list file names no images (one path a line; blank lines and lines "
                           "starting with # are ignored).")
    listed = [(name, list_file.parent / name) for name in names]
    missing = [name for name, path in listed if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise OtxliteError(f"-i @{list_file}: {len(missing)} of its {len(listed)} files do not exist: {shown}. "
                           f"Paths are read relative to the list's folder ({list_file.parent}); fix or remove "
                           "those lines.")
    return listed
