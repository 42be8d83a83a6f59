"""Without --verbose a user sees only otxlite's own output: no mmengine/torch chatter on the console."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otxlite.core.console import prints_to_log
from otxlite.data.sample_data import make_sample_dataset

NOISE = ("Loads checkpoint by", "No CUDA runtime is found", "- mmengine - ", "shape_type_inference")


def _env(cuda_home: Path) -> dict[str, str]:
    # A CUDA toolkit folder but no usable GPU: torch warns "No CUDA runtime is found" when mmcv/mmengine import
    # torch.utils.cpp_extension.
    cuda_home.mkdir(exist_ok=True)
    return dict(os.environ, CUDA_HOME=str(cuda_home), CUDA_VISIBLE_DEVICES="", COLUMNS="200")


@pytest.mark.slow  # a fresh process imports the OpenMMLab stack
def test_cuda_home_warning_only_with_verbose(tmp_path: Path) -> None:
    code = ("import sys; from otxlite.core.console import set_verbose; set_verbose(sys.argv[1] == 'verbose'); "
            "import torch.utils.cpp_extension")
    runs = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120,
                                 env=_env(tmp_path / "cuda")) for mode in ("quiet", "verbose")}
    if "No CUDA runtime is found" not in runs["verbose"].stderr:
        pytest.skip("torch finds a CUDA runtime here, so it does not warn")
    assert "No CUDA runtime is found" not in runs["quiet"].stdout + runs["quiet"].stderr


def test_prints_to_log_sends_lines_to_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("otxlite.test")
    with caplog.at_level(logging.INFO, logger="otxlite.test"), prints_to_log(logger):
        print("Loads checkpoint by local backend from path: x.pth\n")
    assert [record.getMessage() for record in caplog.records] == ["Loads checkpoint by local backend from path: x.pth"]


@pytest.mark.slow
def test_eval_output_is_otxlites_own(tmp_path: Path) -> None:
    """mmengine's "Loads checkpoint by local backend" goes to the run's log file, not the console."""
    from conftest import FAST_PARAMS

    from otxlite.app.train import train

    data = make_sample_dataset(tmp_path / "data", num_train=4, num_val=2, size=64, seed=0)
    run = train("MaskRCNN-ResNet18", data, output=tmp_path / "run", pretrained=False,
                params=FAST_PARAMS + ["learning_parameters.num_iters=1", "data.input_size=[64,64]"])
    args = ["eval", "--load-weights", str(run.weights), "--test-data-roots", str(data), "--device", "cpu",
            "-o", str(tmp_path / "eval")]
    result = subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                            timeout=600, env=_env(tmp_path / "cuda"))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Evaluation finished" in output
    assert not [noise for noise in NOISE if noise in output], output
    log_files = list((tmp_path / "eval" / "logs").rglob("*.log"))
    assert any("Loads checkpoint by local backend" in path.read_text() for path in log_files)
