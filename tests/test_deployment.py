"""``otxlite export --package``: a deployment folder that runs in a fresh venv with only its requirements.txt."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from model_api_agreement import BOUNDARY


def test_the_runtime_shipped_in_a_deployment_folder_is_what_predictor_imports() -> None:
    from otxlite.export.package import runtime_modules

    modules = runtime_modules()
    assert {"otxlite", "otxlite.core.artifacts", "otxlite.runtime.predictor", "otxlite.families.rtmdet_ins"} <= set(
        modules)
    assert not [m for m in modules if m.startswith(("otxlite.training", "otxlite.export", "otxlite.app"))]


def detections(script: Path, python: Path, image: Path) -> list[dict]:
    result = subprocess.run([str(python), str(script), str(image)], capture_output=True, text=True, timeout=300,
                            cwd=script.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[0])["detections"]


@pytest.mark.slow
def test_deployment_folder_runs_in_a_fresh_venv(coins_ir: Path, coins_val: Path, tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    exported = subprocess.run([sys.executable, "-m", "otxlite.cli", "export", "--load-weights", str(coins_ir),
                               "--package", "-o", str(folder)], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(folder / "requirements.txt")],
                               capture_output=True, text=True, timeout=900)
    if installed.returncode != 0 and "No matching distribution" in installed.stderr + installed.stdout:
        pytest.skip(f"the package index cannot be reached: {installed.stderr[-500:]}")
    assert installed.returncode == 0, installed.stderr[-3000:]
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0  # only what requirements.txt names

    image = next(coins_val.glob("images/val/*.png"))
    ours = detections(folder / "run_runtime.py", python, image)
    theirs = detections(folder / "run_model_api.py", python, image)

    from otxlite.core.images import read_image
    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(coins_ir)
    expected = predictor.predict(read_image(image), predictor.metadata.confidence_threshold)
    assert [d["score"] for d in ours] == [round(float(s), 4) for s in expected.scores]  # the same code, shipped
    assert [d["mask_pixels"] for d in ours] == [int(m.sum()) for m in expected.masks]
    sure = [d for d in ours if d["score"] >= predictor.metadata.confidence_threshold + BOUNDARY]
    assert len(sure) >= 3
    for found in sure:  # Model API finds the same detections, with masks of about the same size
        same = [d for d in theirs if d["label"] == found["label"] and abs(d["score"] - found["score"]) < BOUNDARY]
        assert same, f"Model API lacks {found}"
        assert min(abs(d["mask_pixels"] - found["mask_pixels"]) for d in same) <= 0.1 * found["mask_pixels"] + 20
