"""Model files cut short (a full disk, an interrupted copy) or not what they claim: one paragraph in otxlite's words,
exit 2, before any heavy work and before a run folder is made (the CLI's exit code and stderr checked where the
test runs it; the training cases call the verb in this process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from otxlite.core.errors import OtxliteError


def otxlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)


def _cut(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A PyTorch checkpoint as torch saves it (a zip archive), cut in half."""
    import torch

    path = tmp_path / "models" / "weights.pth"
    path.parent.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "otxlite_format": 0}, path)
    return _cut(path)


@pytest.fixture
def ir(tmp_path: Path) -> Path:
    """A small OpenVINO IR pair (openvino.save_model)."""
    import openvino as ov
    from openvino import opset13 as ops

    image = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    weights = ops.constant(np.ones((4, 3, 3, 3), np.float32))
    conv = ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    path = tmp_path / "ir" / "openvino.xml"
    ov.save_model(ov.Model([conv], [image]), path, compress_to_fp16=False)
    return path


@pytest.mark.parametrize("verb", ["eval", "export", "predict"])
def test_cut_weights_file(verb: str, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = {"eval": ["--test-data-roots", str(tmp_path)], "export": [], "predict": ["-i", str(tmp_path)]}[verb]
    result = otxlite(verb, "--load-weights", str(checkpoint), *extra, "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert "the checkpoint is cut short" in result.stderr and "Traceback" not in result.stderr
    assert "copy it again" in result.stderr
    assert not out.exists()


def test_cut_resume_checkpoint_is_refused_before_the_data_is_imported(checkpoint: Path, tmp_path: Path) -> None:
    from otxlite.app.train import train

    last = checkpoint.rename(checkpoint.with_name("last.pth"))
    out = tmp_path / "run"
    with pytest.raises(OtxliteError, match=rf"--resume-from {last}: the checkpoint is cut short"):
        train("MaskRCNN-ResNet18", tmp_path, resume_from=last, output=out)  # tmp_path holds no dataset: not read
    assert not out.exists()


def test_empty_or_foreign_file_named_as_a_checkpoint(tmp_path: Path) -> None:
    empty = tmp_path / "weights.pth"
    empty.write_bytes(b"")
    result = otxlite("export", "--load-weights", str(empty), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "not a PyTorch checkpoint (it starts with nothing" in result.stderr
    empty.write_text("<html>404 Not Found</html>")
    result = otxlite("export", "--load-weights", str(empty), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "not a PyTorch checkpoint (it starts with 3c 68 74 6d)" in result.stderr


def test_cut_ir_weights_and_xml(ir: Path, tmp_path: Path) -> None:
    bin_size = ir.with_suffix(".bin").stat().st_size
    _cut(ir.with_suffix(".bin"))
    result = otxlite("predict", "--load-weights", str(ir), "-i", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert f"holds {bin_size // 2:,} bytes, but the IR reads up to byte {bin_size:,}" in result.stderr.replace("\n", " ")
    assert not (tmp_path / "out").exists()
    _cut(ir)
    result = otxlite("eval", "--load-weights", str(ir), "--test-data-roots", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "the IR's XML is cut short or broken" in result.stderr.replace("\n", " ")
    assert not (tmp_path / "out").exists()


def test_cut_annotation_file_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    from otxlite.app.train import train
    from otxlite.data.sample_data import make_sample_dataset

    root = make_sample_dataset(tmp_path / "coco", num_train=2, num_val=1, size=64)
    _cut(root / "annotations" / "instances_train.json")
    out = tmp_path / "run"
    with pytest.raises(OtxliteError, match=r"does not parse: .*instances_train\.json \(line 1"):
        train("MaskRCNN-ResNet18", root, output=out)
    assert not out.exists()


def test_cut_template_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    from otxlite.core.templates import load_template

    template = tmp_path / "my_template.yaml"
    template.write_text(load_template("MaskRCNN-ResNet18").path.read_text()[:300])
    result = otxlite("train", str(template), "--train-data-roots", str(tmp_path), "-o", str(tmp_path / "run"))
    assert result.returncode == 2 and "is not valid YAML" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
