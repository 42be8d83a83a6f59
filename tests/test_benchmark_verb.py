"""``otxlite benchmark``: every form of a model measured on the user's data (accuracy, latency, throughput)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", "benchmark", *args], capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow
def test_weights_are_measured_as_pytorch_fp32_and_fp16(coins_run, coins_val: Path, tmp_path: Path) -> None:
    """On the coins model: the three forms score the same mask mAP (within parity's bounds), the FP16 IR is
    about half the FP32 one, and every latency and throughput is a positive measurement."""
    result = run("--load-weights", str(coins_run.weights), "--test-data-roots", str(coins_val), "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    forms = report["forms"]
    assert list(forms) == ["PyTorch", "IR FP32", "IR FP16"]
    assert forms["PyTorch"]["mask_mAP"] >= 0.3, forms  # it learned, so equal scores mean something
    assert abs(forms["IR FP32"]["mask_mAP"] - forms["PyTorch"]["mask_mAP"]) <= 0.01
    assert abs(forms["IR FP16"]["mask_mAP"] - forms["PyTorch"]["mask_mAP"]) <= 0.02
    assert forms["IR FP16"]["size_MB"] < 0.6 * forms["IR FP32"]["size_MB"]
    for row in forms.values():
        assert 0 < row["latency_ms"]["p10"] <= row["latency_ms"]["median"] <= row["latency_ms"]["p90"]
        assert row["images_per_s"] > 0
    assert report["machine"]["cores"] >= 1 and "IR FP16" in result.stdout and "latency p50 ms" in result.stdout


def test_missing_data_folder_is_named_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "weights.pth").write_bytes(b"not read: the folder is checked first")
    result = run("--load-weights", str(tmp_path / "weights.pth"), "--test-data-roots", str(tmp_path / "missing"),
                 "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "--test-data-roots" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # no run folder, nothing exported
