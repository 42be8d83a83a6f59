"""Batch scoring's bookkeeping, the same for every engine: which images a shard takes, and the JSON-lines files
a killed run continues without losing or repeating a line."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from otxlite.core.errors import OtxliteError
from otxlite.runtime.images import InputImage

# What a scorer calls once per image: on_line(name, kind, json_line, detections).
OnLine = Callable[[str, str, str, int], None]
SYNC_SECONDS = 2.0  # fsync at most this often: a power cut loses at most the last seconds, a torn line is dropped


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (0-based): the images whose name hashes to ``index`` modulo ``count``. A name's
    shard depends on the name alone, so adding or removing files never moves the others."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` with 0 <= I < N, as ``--shard`` takes it."""
        index, _, count = text.partition("/")
        if not (index.strip().isdigit() and count.strip().isdigit()) or not 0 <= int(index) < int(count):
            raise OtxliteError(f"--shard {text}: give I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4 for four "
                               "shards (a SLURM array's $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT, a Kubernetes "
                               "indexed Job's $JOB_COMPLETION_INDEX).")
        return cls(int(index), int(count))

    def holds(self, name: str) -> bool:
        """Whether the image named ``name`` belongs to this shard."""
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def select(self, images: Iterable[InputImage]) -> list[InputImage]:
        """This shard's images, in their order."""
        return [image for image in images if self.holds(image.name)]


class JsonlLog:
    """An append-only JSON-lines file keyed by one field: each record is one ``write`` of a whole line, so a killed
    process leaves at most one torn last line, which reopening drops; records already there are not written again."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.keys: set[str] = self._recover() if self.path.exists() else set()
        self.descriptor: int | None = None  # opened on the first line: a run with nothing to write leaves no file
        self.synced = time.monotonic()

    def _recover(self) -> set[str]:
        """The keys of the complete lines; a torn last line (no newline: the process died mid-write) is cut off."""
        keys: set[str] = set()
        offset = 0
        with self.path.open("r+b") as stream:
            for number, line in enumerate(stream, 1):
                if not line.endswith(b"\n"):
                    stream.truncate(offset)
                    break
                try:
                    keys.add(json.loads(line)[self.key])
                except (ValueError, KeyError, TypeError) as err:
                    raise OtxliteError(f"{self.path}, line {number}: not a record otxlite wrote ({err}); a resumed run "
                                       "appends to this file. Move it away, or write this run elsewhere with -o.") from err
                offset += len(line)
        return keys

    def append(self, key: str, line: str) -> bool:
        """Write ``line`` (one JSON object, no newline) unless ``key`` is there already; whether it was written."""
        if key in self.keys:
            return False
        if self.descriptor is None:
            self.descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = (line + "\n").encode()
        while data:  # one write() for a regular file; the loop only guards against a partial write
            data = data[os.write(self.descriptor, data):]
        self.keys.add(key)
        if time.monotonic() - self.synced > SYNC_SECONDS:
            os.fsync(self.descriptor)
            self.synced = time.monotonic()
        return True

    def close(self) -> None:
        """Sync and close the file."""
        if self.descriptor is not None:
            os.fsync(self.descriptor)
            os.close(self.descriptor)
            self.descriptor = None
