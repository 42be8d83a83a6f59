"""``otxlite explain``: saliency maps per class from an IR (OpenVINO alone) and from weights.pth (PyTorch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from otxlite.runtime.saliency import class_saliency, overlay


def test_saliency_is_the_maximum_of_score_times_mask_per_class() -> None:
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = masks[1, 1:3, 1:3] = masks[2, 3, 3] = True
    maps = class_saliency(masks, np.array([0.5, 1.0, 0.8]), np.array([0, 0, 1]), num_classes=3, shape=(4, 4))
    assert maps.dtype == np.uint8 and maps.shape == (3, 4, 4)
    assert maps[0, 0, 0] == 128 and maps[0, 1, 1] == 255 and maps[0, 3, 3] == 0  # overlap: the larger wins
    assert maps[1, 3, 3] == 204 and maps[1].sum() == 204 and not maps[2].any()  # class 2 detected nothing
    image = np.zeros((4, 4, 3), np.uint8)
    assert overlay(image, maps[0]).shape == (4, 4, 3) and not np.array_equal(overlay(image, maps[0]), image)


def explain(weights: Path, image: Path, out: Path) -> np.ndarray:
    result = subprocess.run([sys.executable, "-m", "otxlite.cli", "explain", "--load-weights", str(weights), "-i",
                             str(image), "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "saliency" in result.stdout
    return np.load(out / "saliency" / f"{image.stem}.npy")


def hottest(saliency: np.ndarray) -> np.ndarray:
    """The pixels within 10% of the strongest class's peak."""
    strongest = saliency[int(np.argmax(saliency.reshape(len(saliency), -1).max(axis=1)))].astype(np.float32)
    return strongest >= 0.9 * strongest.max()


@pytest.mark.slow
def test_pytorch_and_ir_agree_on_the_hottest_region(coins_run, coins_ir: Path, coins_val: Path, tmp_path: Path) -> None:
    """On the model that learned the coins: both maps cover the image, name the coin, and their hottest regions
    (the most confident coins) overlap at IoU >= 0.5."""
    image = next((coins_val / "images" / "val").iterdir())
    from_ir = explain(coins_ir, image, tmp_path / "ir")
    from_pytorch = explain(coins_run.weights, image, tmp_path / "torch")
    height, width = cv2.imread(str(image)).shape[:2]
    assert from_ir.shape == from_pytorch.shape == (1, height, width)
    assert from_ir.max() >= 200 and (tmp_path / "ir" / "saliency" / f"{image.stem}_coin.png").is_file()
    a, b = hottest(from_ir), hottest(from_pytorch)
    assert (a & b).sum() / (a | b).sum() >= 0.5, ((a & b).sum(), (a | b).sum())
