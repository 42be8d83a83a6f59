"""Shared fixtures: the generated sample dataset, one small trained model for the whole session, and a
model trained on a real photo (coins) that has learned."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from otxlite.data.sample_data import make_sample_dataset

os.environ.setdefault("COLUMNS", "200")  # rich tables are not truncated in captured output

# A short, fast recipe: tiny images, a few epochs, a short warmup. Used by every training test.
FAST_PARAMS = [
    "data.input_size=[128,128]",
    "learning_parameters.batch_size=4",
    "learning_parameters.num_workers=0",
    "learning_parameters.learning_rate_warmup_iters=5",
]



def long_training_command(dataset: Path, out: Path) -> list[str]:
    """``otxlite train`` of a 50-epoch run on ``dataset`` into ``out``: long enough to be stopped or met midway."""
    args = [sys.executable, "-m", "otxlite.cli", "train", "MaskRCNN-ResNet18", "--train-data-roots", str(dataset),
            "-o", str(out), "--no-pretrained", "--param", "learning_parameters.num_iters=50"]
    for param in FAST_PARAMS:
        args += ["--param", param]
    return args


# Fixtures that train or export a model, run setup.sh or start a server, each declared with ``slow_fixture``: a test
# that uses one (directly or through another fixture) is `slow` (`pytest -m "not slow"` skips it and runs in under
# 2 minutes).
SLOW_FIXTURES: set[str] = set()


def slow_fixture(*args, **kwargs):
    """``pytest.fixture`` for a fixture that makes every test using it ``slow``."""
    def declare(function):
        SLOW_FIXTURES.add(function.__name__)
        return pytest.fixture(*args, **kwargs)(function)
    return declare


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample dataset (COCO, train + val subsets) at 128 px."""
    return make_sample_dataset(tmp_path_factory.mktemp("sample"), num_train=24, num_val=8, size=128)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 2 validation images at 128 px: one iteration per epoch, for tests of the plumbing
    (every template, resume, DDP, signals) rather than of what a model learns."""
    return make_sample_dataset(tmp_path_factory.mktemp("tiny"), num_train=4, num_val=2, size=128)


@slow_fixture(scope="session")
def trained_run(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """MaskRCNN-EfficientNetB2B trained from random weights for 6 epochs on the sample dataset."""
    from otxlite.app.train import train

    return train("MaskRCNN-EfficientNetB2B", sample_dataset, output=tmp_path_factory.mktemp("run"),
                 params=FAST_PARAMS + ["learning_parameters.num_iters=6"], pretrained=False)


@slow_fixture(scope="session")
def exported_ir(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's trained model exported to OpenVINO IR (FP32)."""
    from otxlite.export.pipeline import export_openvino

    return export_openvino(trained_run.weights, tmp_path_factory.mktemp("openvino"))


@slow_fixture(scope="session")
def half_precision_ir(trained_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's trained model exported to OpenVINO IR with FP16 weights."""
    from otxlite.export.pipeline import export_openvino

    return export_openvino(trained_run.weights, tmp_path_factory.mktemp("openvino_fp16"), half_precision=True)


@pytest.fixture(scope="session")
def coins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``coins`` real-photo set of ``tests/real_photos.py`` (train tiles + a held-out val tile)."""
    pytest.importorskip("skimage")
    from real_photos import make_real_photo_dataset

    return make_real_photo_dataset("coins", tmp_path_factory.mktemp("coins"))


@pytest.fixture(scope="session")
def coins_val(coins: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out validation tile of ``coins`` alone, as its own dataset folder."""
    root = tmp_path_factory.mktemp("coins_val")
    shutil.copytree(coins / "images" / "val", root / "images" / "val")
    (root / "annotations").mkdir()
    shutil.copy(coins / "annotations" / "instances_val.json", root / "annotations")
    return root


@slow_fixture(scope="session")
def coins_run(coins: Path, tmp_path_factory: pytest.TempPathFactory):
    """MaskRCNN-EfficientNetB2B trained from random weights for 30 iterations on the coins photo."""
    from otxlite.app.train import train

    return train("MaskRCNN-EfficientNetB2B", coins, output=tmp_path_factory.mktemp("coins_run"), pretrained=False,
                 params=["learning_parameters.num_iters=30", "learning_parameters.batch_size=2",
                         "learning_parameters.learning_rate_warmup_iters=5", "data.input_size=[256,256]",
                         "learning_parameters.num_workers=0"])


@slow_fixture(scope="session")
def coins_ir(coins_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The coins model exported to OpenVINO IR (FP32)."""
    from otxlite.export.pipeline import export_openvino

    return export_openvino(coins_run.weights, tmp_path_factory.mktemp("coins_openvino"))
