"""A run folder in use is locked: a second run into it is refused in one paragraph; a lock left by a process that
is gone is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import long_training_command

from otxlite.core.errors import OtxliteError
from otxlite.core.runs import LOCK_FILE, check_run_folder_free, run_folder_lock


def _lock_of(pid: int, folder: Path, host: str | None = None) -> Path:
    import socket

    path = folder / LOCK_FILE
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "verb": "train",
                                "since": "2026-12-03 05:00:00"}))
    return path


def test_a_live_holder_is_named_and_kept(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _lock_of(sleeper.pid, tmp_path)
        with pytest.raises(OtxliteError, match=rf"in use by otxlite train \(PID {sleeper.pid}\)"):
            with run_folder_lock(tmp_path, "predict"):
                pass
        assert json.loads(lock.read_text())["pid"] == sleeper.pid  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ddp_ranks_past_0_run_in_the_folder_rank_0_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 starts while rank 0 (another live process) holds the folder: not refused, the lock left to rank 0."""
    rank_0 = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _lock_of(rank_0.pid, tmp_path)
        with pytest.raises(OtxliteError, match="in use by"):
            check_run_folder_free(tmp_path)  # as a plain second run: refused
        monkeypatch.setenv("RANK", "1")
        check_run_folder_free(tmp_path)
        with run_folder_lock(tmp_path, "train"):
            pass
        assert json.loads(lock.read_text())["pid"] == rank_0.pid
    finally:
        rank_0.kill()
        rank_0.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over_and_released(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = _lock_of(gone.pid, tmp_path)
    with run_folder_lock(tmp_path, "train"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with run_folder_lock(tmp_path, "train"):  # the same process again (a resume in one session)
            pass
        assert lock.is_file()
    assert not lock.exists()


def test_a_lock_from_another_machine_is_refused_with_the_way_out(tmp_path: Path) -> None:
    _lock_of(12345, tmp_path, host="gpu-node-7")
    with pytest.raises(OtxliteError, match=r"PID 12345\) on the machine gpu-node-7.*delete .*\.otxlite\.lock"):
        with run_folder_lock(tmp_path, "train"):
            pass


@pytest.mark.slow
def test_second_train_into_a_running_folder_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    args = long_training_command(tiny_dataset, tmp_path)
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (tmp_path / "results.csv").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.5)
        assert (tmp_path / "results.csv").exists(), "the first run wrote no epoch"
        second = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"in use by otxlite train (PID {first.pid})" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on
        rows_before = (tmp_path / "results.csv").read_text().count("\n")
        while (tmp_path / "results.csv").read_text().count("\n") == rows_before and time.time() < deadline:
            time.sleep(0.5)
        assert (tmp_path / "results.csv").read_text().count("\n") > rows_before  # still training, undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert not (tmp_path / LOCK_FILE).exists()  # released when it stopped
