"""labelme folders, written by labelme's own LabelFile and shape serializer on a real photo, read as labelme's own
conversion (``labelme.utils.shapes_to_label``, the core of its instance-segmentation example) reads them."""

from __future__ import annotations

import json
import shutil
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dataset_formats import labelme_shape, save_labelme, train_evaluate_predict
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError
from otxlite.data.convert import items_to_coco
from otxlite.data.formats import detect_format, import_dataset
from otxlite.data.prepare import prepare_training_data


SKIPPED = ("point", "line", "linestrip")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded images go to a temporary cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _coin_masks(coins: Path, subset: str) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Image file name -> (RGB pixels, instance masks) of the coins photo set."""
    coco = json.loads((coins / "annotations" / f"instances_{subset}.json").read_text())
    result = {}
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        rles = [mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], image["height"], image["width"]))
                for a in anns]
        pixels = cv2.imread(str(coins / "images" / subset / image["file_name"]))
        result[image["file_name"]] = (pixels, [mask_utils.decode(rle).astype(bool) for rle in rles])
    return result


def _contour(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea).reshape(-1, 2)


def _annotator_shapes(masks: list[np.ndarray], size: tuple[int, int]) -> list[dict[str, Any]]:
    """Every kind of labelme shape an annotator draws on the photo: coins as polygons (small and large ones under
    two labels, one with a space and a slash), one coin in two parts sharing a group_id, one as a mask shape;
    a rectangle and a circle; a point, a line and a linestrip; an ``__ignore__`` region."""
    height, width = size
    shapes = []
    for number, mask in enumerate(masks):
        label = "coin / large" if mask.sum() > 700 else "coin"
        if number == 0:  # the mask shape: a PNG of its box, pasted at its first point
            ys, xs = np.nonzero(mask)
            box = [[xs.min(), ys.min()], [xs.max(), ys.max()]]
            shapes.append(labelme_shape(label, "mask", box, None, mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
        elif number == 1:  # drawn in two parts: left and right of its centre, one group
            centre = int(np.nonzero(mask)[1].mean())
            left, right = mask.copy(), mask.copy()
            left[:, centre:], right[:, :centre] = False, False
            shapes += [labelme_shape(label, "polygon", _contour(part), 7) for part in (left, right)]
        else:
            shapes.append(labelme_shape(label, "polygon", _contour(mask)))
    shapes += [
        labelme_shape("marker", "rectangle", [[width - 4, 40], [width - 30, 12]]),
        labelme_shape("marker", "circle", [[width - 17, height - 20], [width - 17, height - 8]]),
        labelme_shape("__ignore__", "polygon", [[2, 2], [25, 2], [25, 30], [2, 30]]),
        labelme_shape("centre", "point", [[50, 50]]),
        labelme_shape("scale bar", "line", [[5, height - 5], [40, height - 5]]),
        labelme_shape("edge", "linestrip", [[5, 60], [20, 70], [30, 60]]),
    ]
    return shapes


@pytest.fixture(scope="module")
def labelme_coins(coins: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The coins photos annotated in labelme: JSON files beside the images (train/ and val/ folders)."""
    root = tmp_path_factory.mktemp("labelme_coins")
    for subset in ("train", "val"):
        for name, (pixels, masks) in _coin_masks(coins, subset).items():
            image = root / subset / name
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), pixels)
            save_labelme(image.with_suffix(".json"), _annotator_shapes(masks, pixels.shape[:2]), image,
                         pixels.shape[:2])
    return root


def _labelme_instances(label_file: Path) -> list[tuple[str, np.ndarray]]:
    """(label, mask) of each instance, as labelme's own conversion makes them: shapes grouped by (label,
    group_id), each instance's shapes drawn by ``labelme.utils.shapes_to_label``; point and line kinds left out
    (labelme would draw them as 10 px strokes, which are no instance)."""
    from labelme import LabelFile
    from labelme.utils import img_data_to_arr, shapes_to_label

    data = LabelFile(str(label_file))
    size = img_data_to_arr(data.image_data).shape[:2]
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for shape in data.shapes:
        if shape["shape_type"] not in SKIPPED:
            groups[shape["label"], shape["group_id"] if shape["group_id"] is not None else uuid.uuid1()].append(shape)
    return [(label, shapes_to_label(size, shapes, {label: 1})[1] == 1) for (label, _), shapes in groups.items()]


def _our_instances(coco: dict[str, Any], image_id: int) -> list[tuple[str, np.ndarray, bool]]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    info = next(image for image in coco["images"] if image["id"] == image_id)
    result = []
    for ann in (a for a in coco["annotations"] if a["image_id"] == image_id):
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, info["height"], info["width"]))
        result.append((names[ann["category_id"]], mask_utils.decode(segmentation).astype(bool), bool(ann["iscrowd"])))
    return result


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _outline(mask: np.ndarray) -> np.ndarray:
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~cv2.erode(mask.astype(np.uint8), kernel).astype(bool)


def _same_shape(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether two masks differ only on their outlines and overlap mostly: labelme draws with PIL, whose polygons
    include every pixel their edges touch, where COCO polygons (labelme2coco's output) cover pixel centres, so
    parts of one object meet at a seam (a 59-pixel coin cut by the tile edge: IoU 0.64)."""
    return not ((ours ^ theirs) & ~(_outline(ours) | _outline(theirs))).any() and _iou(ours, theirs) > 0.6


def test_labelme_folder_reads_as_labelmes_own_conversion(labelme_coins: Path) -> None:
    assert detect_format(labelme_coins) == "labelme"
    dataset = import_dataset(labelme_coins, None, "--train-data-roots")
    assert dataset.labels == ["coin", "coin / large", "marker"]  # __ignore__ is no class; names kept as written
    coco, stats = items_to_coco(dataset.items, dataset.labels, dataset.labels)
    assert stats.images == 3 and stats.other_shapes_skipped == 3 * len(SKIPPED)
    assert stats.crowd == 3  # one __ignore__ region per image, a crowd region of every label
    for info in coco["images"]:
        label_file = Path(info["file_name"]).with_suffix(".json")
        ours = _our_instances(coco, info["id"])
        theirs = _labelme_instances(label_file)
        ignore = [mask for label, mask in theirs if label == "__ignore__"]
        crowd = [(label, mask) for label, mask, is_crowd in ours if is_crowd]
        assert sorted(label for label, _ in crowd) == dataset.labels  # every label ignores detections there
        assert all(_same_shape(mask, ignore[0]) for _, mask in crowd)
        objects = [(label, mask) for label, mask, is_crowd in ours if not is_crowd]
        expected = [(label, mask) for label, mask in theirs if label != "__ignore__"]
        assert sorted(label for label, _ in objects) == sorted(label for label, _ in expected)
        for label, mask in expected:
            assert any(_same_shape(ours_mask, mask) for ours_label, ours_mask in objects if ours_label == label), \
                (label_file.name, label)
        assert len([label for label, _ in expected if label.startswith("coin")]) >= 6


def test_labelme_embedded_image_and_relative_paths(labelme_coins: Path, tmp_path: Path) -> None:
    """The image embedded in imageData is used when the file is missing; imagePath may lead elsewhere."""
    root = tmp_path / "project"
    shutil.copytree(labelme_coins, root)
    image = root / "train" / "coins_0.png"
    label_file = json.loads(image.with_suffix(".json").read_text())
    pixels = cv2.imread(str(image))
    embedded = save_labelme(root / "train" / "coins_0.json", label_file["shapes"], image, pixels.shape[:2],
                            embed=True)
    image.unlink()
    moved = root / "photos" / "coins_1.png"
    moved.parent.mkdir()
    (root / "train" / "coins_1.png").rename(moved)
    shapes = json.loads((root / "train" / "coins_1.json").read_text())["shapes"]
    save_labelme(root / "train" / "labels" / "coins_1.json", shapes, moved, cv2.imread(str(moved)).shape[:2])
    (root / "train" / "coins_1.json").unlink()
    assert json.loads(embedded.read_text())["imageData"]
    dataset = import_dataset(root, None, "--train-data-roots")
    paths = sorted(Path(item.media.path).resolve() for item in dataset.items)
    assert moved in paths and any(tmp_path / "cache" in p.parents for p in paths)
    cached = next(p for p in paths if tmp_path / "cache" in p.parents)
    assert np.array_equal(cv2.imread(str(cached)), pixels)
    coco, stats = items_to_coco(dataset.items, dataset.labels, dataset.labels)
    assert stats.images == 3 and sum(stats.instances.values()) > 10


def test_labelme_missing_image_without_image_data_is_named(labelme_coins: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(labelme_coins, root)
    (root / "val" / "coins_2.png").unlink()
    with pytest.raises(OtxliteError, match=r"coins_2\.json: its image .*coins_2\.png does not exist and the file "
                                           r"embeds no image"):
        import_dataset(root, None, "--train-data-roots")


def test_labelme_trains_on_its_subset_folders(labelme_coins: Path, tmp_path: Path) -> None:
    prepared = prepare_training_data(labelme_coins, None, tmp_path / "run")
    assert prepared.formats == {"train": "labelme"}
    assert prepared.split_note == "validation subset of the train folder"
    assert prepared.subsets["train"].stats.images == 2 and prepared.subsets["val"].stats.images == 1


@pytest.mark.slow
def test_labelme_folder_trains_evaluates_and_predicts(labelme_coins: Path, tmp_path: Path) -> None:
    performance = train_evaluate_predict(labelme_coins, tmp_path)
    assert performance["num_images"] == 3 and set(performance["per_class"]) == {"coin", "coin / large", "marker"}
