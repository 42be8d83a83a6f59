"""Atomic file writes: a reader never sees a half-written file, an interrupt never corrupts one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from otxlite.core.errors import OtxliteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TEMPORARY_MARK = ".tmp"  # atomic_path's temporaries are named .<stem>.<random>.tmp<suffix>


@contextmanager
def atomic_path(path: Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds. ``size``: the bytes
    to be written, if known, for the message when the disk is full."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{TEMPORARY_MARK}{path.suffix}", dir=path.parent)
    except OSError as err:
        raise _cannot_write(path, err) from err
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:  # disk full, quota, permissions: the final name keeps its old content (or stays absent)
        raise _cannot_write(path, err, os.path.getsize(tmp) if os.path.exists(tmp) else 0, size) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_unfinished_writes(folder: Path) -> None:
    """Delete the temporaries that a killed process left in ``folder`` (its atomic writes that never finished).
    Only for a folder this process holds: another process's write in flight would be deleted too."""
    if folder.is_dir():
        for leftover in folder.glob(f".*{TEMPORARY_MARK}*"):
            leftover.unlink(missing_ok=True)


def _cannot_write(path: Path, err: OSError, written: int = 0, size: int | None = None) -> OtxliteError:
    """The paragraph of a failed write: the path, the bytes it needs (or had written when it failed), what is free."""
    needed = max(size or 0, written)
    needs = f" It needs at least {needed:,} bytes" if needed else ""
    try:
        free = f"; {shutil.disk_usage(path.parent).free:,} bytes are free there." if needs else ""
    except OSError:
        free = "." if needs else ""
    return OtxliteError(f"Cannot write {path}: {err.strerror or err}.{needs}{free} Nothing half-written was left "
                        "under that name (a previous version of the file stays whole); free some disk space or "
                        "choose another output folder (-o), then run again.")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    data = text.encode()
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def cache_dir(*parts: str) -> Path:
    """A folder under otxlite's cache (``$XDG_CACHE_HOME/otxlite``, default ``~/.cache/otxlite``), created."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "otxlite"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent))


def save_ir_atomic(model: Any, xml: Path) -> Path:
    """Save an OpenVINO IR pair so that neither file is ever half-written at its final name (the .bin is
    renamed first: an ``openvino.xml`` on disk always has its weights beside it)."""
    import openvino as ov

    xml = Path(xml)
    tmp = xml.with_name(f".{xml.stem}.tmp.xml")
    weights = sum(op.get_byte_size() for op in model.get_ordered_ops() if op.get_type_name() == "Constant")
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=False)  # FP16 weights: otxlite.export.fp16_weights
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    except (OSError, RuntimeError) as err:  # OpenVINO reports a failed write as RuntimeError
        written = sum(p.stat().st_size for p in (tmp, tmp.with_suffix(".bin")) if p.exists())
        raise _cannot_write(xml, err if isinstance(err, OSError) else OSError(str(err)), written, weights) from err
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            if leftover.exists():
                leftover.unlink()
    return xml
