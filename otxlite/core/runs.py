"""Run folders: where a verb writes its outputs, and the lock that keeps a second run out of one in use."""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from otxlite.core.errors import OtxliteError

RUNS_ROOT = Path("otxlite-runs")
LOCK_FILE = ".otxlite.lock"


def run_folder(output: Path | None, verb: str) -> Path:
    """``output`` if given, else a new timestamped folder under ``otxlite-runs/``; created either way."""
    folder = Path(output) if output else RUNS_ROOT / f"{datetime.now():%Y%m%d-%H%M%S}-{verb}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot), to tell it from a later one with its PID."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """This process as a lock or a record names it: PID, host, and start time (to tell it from a later one with its
    PID)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started_ticks": _process_start(os.getpid())}


def process_is_gone(record: dict[str, Any]) -> bool:
    """Whether the process that ``record`` (``this_process()``, saved earlier) names ran on this host and has ended."""
    return record.get("host") == socket.gethostname() and not _is_alive(record)


def _is_alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock on this host still runs (the same process, not a reused PID)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    started = holder.get("started_ticks")
    return started is None or _process_start(pid) in (None, started)


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _refuse_if_held(folder: Path, holder: dict[str, Any], host: str) -> None:
    """Raise the paragraph if ``holder`` (a lock's content) is a live process other than this one."""
    path = Path(folder) / LOCK_FILE
    if holder.get("host") not in (None, host):
        raise OtxliteError(
            f"The run folder {folder} is in use by otxlite {holder.get('verb', '')} (PID {holder.get('pid')}) "
            f"on the machine {holder['host']}, since {holder.get('since', '?')}. Write this run elsewhere with "
            f"-o, or wait for it; if that process is gone, delete {path} and run again."
        )
    if holder and holder.get("pid") != os.getpid() and _is_alive(holder):
        raise OtxliteError(
            f"The run folder {folder} is in use by otxlite {holder.get('verb', '')} (PID {holder['pid']}), "
            f"running since {holder.get('since', '?')}: two runs would overwrite each other's models, "
            "results and logs. Write this run elsewhere with -o, or wait until that one ends (or stop it)."
        )


def _is_ddp_helper_rank() -> bool:
    """Whether this process is a DDP rank other than 0, which runs in the folder rank 0 holds."""
    return int(os.environ.get("RANK", "0") or 0) != 0


def check_run_folder_free(folder: Path | None) -> None:
    """Refuse early (before heavy work) a run folder that another live run holds; ``run_folder_lock`` takes it."""
    if _is_ddp_helper_rank():
        return
    if folder is not None and (Path(folder) / LOCK_FILE).is_file():
        _refuse_if_held(Path(folder), _read_lock(Path(folder) / LOCK_FILE), socket.gethostname())


@contextmanager
def run_folder_lock(folder: Path, verb: str) -> Iterator[None]:
    """Hold ``folder`` while a run writes into it: ``folder/.otxlite.lock`` names this process (PID, host, verb).

    A second run into a folder whose lock names a live process is refused in one paragraph, and the first is not
    disturbed; a lock left by a process that is gone (kill -9, a crash) is taken over. The same process may enter
    again (a resume in the same Python session). Under DDP only rank 0 holds the lock; the other ranks run in the
    folder it holds.
    """
    if _is_ddp_helper_rank():
        yield
        return
    path = Path(folder) / LOCK_FILE
    me = {**this_process(), "verb": verb, "since": f"{datetime.now():%Y-%m-%d %H:%M:%S}"}
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                yield  # this process holds it already; its outer holder releases it
                return
            _refuse_if_held(folder, holder, me["host"])
            path.unlink(missing_ok=True)  # left by a process that is gone: take it over
            continue
        with os.fdopen(descriptor, "w") as stream:
            json.dump(me, stream)
        break
    try:
        yield
    finally:
        if _read_lock(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
