"""otxlite predict and OpenVINO-only evaluation of an exported IR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from otxlite.runtime.polygons import mask_to_polygons


def otxlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture()
def photo_folder(sample_dataset: Path, tmp_path: Path) -> Path:
    """Val images, plus a text file and a corrupt 'image' that predict must skip with a warning."""
    folder = tmp_path / "photos"
    shutil.copytree(sample_dataset / "images" / "val", folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    first = sorted(folder.glob("val_*.jpg"))[0].read_bytes()
    (folder / "cut.jpg").write_bytes(first[: len(first) // 2])  # a download that stopped half-way
    return folder


def test_predict_writes_azureml_json_and_overlays(exported_ir: Path, photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(photo_folder), "-o", str(out),
                     "--confidence-threshold", "0.1", "--max-polygon-points", "12")
    assert result.returncode == 0, result.stderr
    assert "notes.txt" in result.stderr and "broken.jpg" in result.stderr
    assert "3 images could not be read, 1 other files skipped" in result.stdout
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(Path(e["file"]).name for e in errors) == ["broken.jpg", "cut.jpg", "empty.png"]
    entries = json.loads((out / "predictions.json").read_text())
    names = sorted(p.name for p in photo_folder.glob("val_*.jpg"))
    assert [e["filename"] for e in entries] == names
    assert sum(len(e["boxes"]) for e in entries) > 0
    for entry in entries:
        for det in entry["boxes"]:
            box = det["box"]
            assert 0 <= box["topX"] <= box["bottomX"] <= 1 and 0 <= box["topY"] <= box["bottomY"] <= 1
            assert det["label"] in {"disc", "star", "ring"} and det["score"] >= 0.1
            for polygon in det["polygon"]:
                assert len(polygon) % 2 == 0 and 6 <= len(polygon) <= 24
                assert all(0.0 <= v <= 1.0 for v in polygon)
    assert len(list((out / "overlays").glob("*.png"))) == len(names)


def test_predict_explain_adds_the_saliency_maps_of_otxlite_explain(exported_ir: Path, sample_dataset: Path,
                                                                   tmp_path: Path) -> None:
    """`predict --explain`: the same predictions as without it, plus the maps `otxlite explain` writes."""
    image = sorted((sample_dataset / "images" / "val").glob("*.jpg"))[1]
    runs = {}
    for name, extra in (("plain", []), ("explained", ["--explain"])):
        result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(image), "-o", str(tmp_path / name),
                         *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = json.loads((tmp_path / name / "predictions.json").read_text())
    assert runs["explained"] == runs["plain"] and not (tmp_path / "plain" / "saliency").exists()
    result = otxlite("explain", "--load-weights", str(exported_ir), "-i", str(image), "-o", str(tmp_path / "explain"))
    assert result.returncode == 0, result.stderr[-2000:]
    from_predict = np.load(tmp_path / "explained" / "saliency" / f"{image.stem}.npy").astype(int)
    from_explain = np.load(tmp_path / "explain" / "saliency" / f"{image.stem}.npy").astype(int)
    assert from_predict.shape == from_explain.shape == (3, *cv2.imread(str(image)).shape[:2])
    assert from_predict.max() > 0 and np.abs(from_predict - from_explain).mean() < 1.0


def test_predict_runs_without_torch(exported_ir: Path, sample_dataset: Path, tmp_path: Path) -> None:
    """The inference path imports only OpenVINO: make torch, mmcv and mmdet unimportable and predict."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'mmcv', 'mmdet', 'mmengine', 'mmdeploy'):\n"
        "            raise ImportError(f'{name} is blocked in this test')\n"
        "sys.meta_path.insert(0, _Block())\n")
    image = next((sample_dataset / "images" / "val").glob("*.jpg"))
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "otxlite.cli", "predict", "--load-weights", str(exported_ir),
                             "-i", str(image), "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_eval_on_ir_reports_like_pytorch_and_writes_the_report(exported_ir: Path, trained_run, sample_dataset: Path,
                                                              tmp_path: Path) -> None:
    """performance.json of an IR has the keys of training's; report/ accounts for every ground-truth object once
    (found, confused or missed: the confusion matrix's true rows) and draws the images with errors."""
    result = otxlite("eval", "--load-weights", str(exported_ir), "--test-data-roots", str(sample_dataset),
                     "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    ir_report = json.loads((tmp_path / "performance.json").read_text())
    torch_report = json.loads((trained_run.run_dir / "performance.json").read_text())
    assert set(ir_report) == set(torch_report) and ir_report["model"] == "openvino.xml"
    assert "report.html" in result.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    ground_truth = json.loads((tmp_path / "data" / "test.json").read_text())["annotations"]
    matrix = np.array(report["confusion_matrix"]["rows_true_columns_predicted"])
    assert matrix[:-1].sum() == sum(1 for a in ground_truth if not a.get("iscrowd"))
    assert report["confidence_threshold"] == pytest.approx(ir_report["confidence_threshold"], abs=1e-4)
    for worst in report["worst_images"]:
        assert (tmp_path / "report" / worst["file"]).is_file()
        assert worst["missed"] + worst["false_positives"] + worst["wrong_class"] > 0


def test_ir_errors_are_clear(exported_ir: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    shutil.copy(exported_ir, lonely)
    result = otxlite("predict", "--load-weights", str(lonely), "-i", str(tmp_path))
    assert result.returncode != 0 and "lonely.bin" in result.stderr and "Traceback" not in result.stderr

    import openvino as ov

    model = ov.Core().read_model(str(exported_ir))
    bare = ov.Model(model.get_results(), model.get_parameters(), "bare")  # same graph, no rt_info
    ov.save_model(bare, str(tmp_path / "bare.xml"))
    result = otxlite("predict", "--load-weights", str(tmp_path / "bare.xml"), "-i", str(tmp_path))
    assert result.returncode != 0 and "metadata" in result.stderr and "Traceback" not in result.stderr


def test_missing_input_is_an_error(exported_ir: Path, tmp_path: Path) -> None:
    result = otxlite("predict", "--load-weights", str(exported_ir), "-i", str(tmp_path / "nowhere"))
    assert result.returncode != 0 and "nowhere" in result.stderr


def test_polygons_follow_connected_parts() -> None:
    mask = np.zeros((60, 80), np.uint8)
    cv2.circle(mask, (20, 30), 12, 1, -1)
    cv2.rectangle(mask, (50, 10), (70, 50), 1, -1)
    polygons = mask_to_polygons(mask.astype(bool), max_points=8)
    assert len(polygons) == 2
    assert all(3 <= len(p) <= 8 for p in polygons)
