"""Label Studio JSON exports, written by Label Studio's own converter (its COCO import for polygons and
rectangles, its ``image2annotation`` for brush masks) on a real photo, read back to the photo's instances."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dataset_formats import train_evaluate_predict
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError
from otxlite.data.convert import items_to_coco
from otxlite.data.formats import detect_format, import_dataset

UPLOAD = "/data/upload/1/"


def _coco_masks(coco: dict[str, Any], image_id: int) -> list[np.ndarray]:
    info = next(image for image in coco["images"] if image["id"] == image_id)
    masks = []
    for ann in coco["annotations"]:
        if ann["image_id"] == image_id and not ann["iscrowd"]:
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, info["height"], info["width"]))
            masks.append(mask_utils.decode(segmentation).astype(bool))
    return masks


def _label_studio_export(coins: Path, out: Path) -> Path:
    """The coins train photos as a Label Studio project exports them: polygons and rectangles from Label Studio's
    COCO import, each image's first coin as a brush mask instead (Label Studio's ``image2annotation``), uploaded
    images named with Label Studio's 8-character prefix, task and annotation ids."""
    from label_studio_sdk.converter.brush import image2annotation
    from label_studio_sdk.converter.imports.coco import convert_coco_to_ls

    coco_file = coins / "annotations" / "instances_train.json"
    coco = json.loads(coco_file.read_text())
    out.mkdir(parents=True)
    convert_coco_to_ls(str(coco_file), str(out / "tasks.json"), image_root_url=UPLOAD)
    tasks = json.loads((out / "tasks.json").read_text())
    for written in out.iterdir():  # the tasks and the labeling config: the export below replaces them
        written.unlink()
    for number, (task, image) in enumerate(zip(tasks, coco["images"]), start=1):
        shutil.copy(coins / "images" / "train" / image["file_name"], out / image["file_name"])
        task["id"] = number
        task["data"]["image"] = f"{UPLOAD}{number:08x}-{image['file_name']}"
        results = task.pop("annotations")[0]["result"]
        first = _coco_masks(coco, image["id"])[0]
        polygon_of_first = next(i for i, r in enumerate(results) if r["type"] == "polygonlabels")
        del results[polygon_of_first]
        brush_png = out / f"brush_{number}.png"
        cv2.imwrite(str(brush_png), first.astype(np.uint8) * 255)
        results.append(image2annotation(str(brush_png), "coin", "label_brush", "image")["result"][0])
        brush_png.unlink()
        task["annotations"] = [{"id": 100 + number, "was_cancelled": True, "result": []},
                               {"id": 200 + number, "was_cancelled": False, "result": results}]
    tasks.append({"id": 99, "data": {"image": f"{UPLOAD}0000ffff-unlabelled.png"}, "annotations": []})
    (out / "project-1-at-2026-12-03.json").write_text(json.dumps(tasks))
    return out


@pytest.fixture(scope="module")
def label_studio_coins(coins: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _label_studio_export(coins, tmp_path_factory.mktemp("label_studio") / "export")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_label_studio_export_reads_as_the_photos_instances(label_studio_coins: Path, coins: Path) -> None:
    assert detect_format(label_studio_coins) == "label_studio"
    dataset = import_dataset(label_studio_coins, None, "--train-data-roots")
    assert dataset.labels == ["coin"]
    coco, stats = items_to_coco(dataset.items, dataset.labels, dataset.labels)
    original = json.loads((coins / "annotations" / "instances_train.json").read_text())
    assert stats.images == 2  # the task nobody annotated is left out
    assert stats.box_only_skipped == len(original["annotations"])  # Label Studio's import adds a box per object
    assert sum(stats.instances.values()) == len(original["annotations"])
    for ours, theirs in zip(coco["images"], original["images"]):
        expected = _coco_masks(original, theirs["id"])
        found = _coco_masks(coco, ours["id"])
        assert len(found) == len(expected)
        for mask in expected:  # polygons in percent and brush RLE give the photo's masks back
            assert max(_iou(mask, other) for other in found) > 0.97


def test_label_studio_images_under_data_root(label_studio_coins: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    media = tmp_path / "label-studio" / "media" / "upload" / "1"
    media.mkdir(parents=True)
    export.mkdir()
    export_file = shutil.copy(next(label_studio_coins.glob("*.json")), export)
    for task in json.loads(Path(export_file).read_text())[:-1]:  # Label Studio keeps uploads with their prefix
        reference = Path(task["data"]["image"])
        shutil.copy(label_studio_coins / reference.name.split("-", 1)[1], media / reference.name)
    with pytest.raises(OtxliteError, match=r"task 1: the image /data/upload/1/00000001-coins_0\.png was not found "
                                           r"under .*export .*point --data-root at it"):
        import_dataset(export, None, "--train-data-roots")
    dataset = import_dataset(export, None, "--train-data-roots", data_root=tmp_path / "label-studio" / "media")
    assert sorted(Path(item.media.path).parent for item in dataset.items) == [media, media]


def test_data_root_is_refused_for_formats_that_do_not_use_it(tmp_path: Path) -> None:
    from otxlite.data.sample_data import make_sample_dataset

    coco = make_sample_dataset(tmp_path / "coco", num_train=2, num_val=1, size=64)
    with pytest.raises(OtxliteError, match="--data-root is for label_studio and azureml exports"):
        import_dataset(coco, None, "--train-data-roots", data_root=tmp_path)


@pytest.mark.slow
def test_label_studio_export_trains_evaluates_and_predicts(label_studio_coins: Path, tmp_path: Path) -> None:
    performance = train_evaluate_predict(label_studio_coins, tmp_path)
    assert performance["num_images"] == 2 and set(performance["per_class"]) == {"coin"}
