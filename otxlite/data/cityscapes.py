"""Cityscapes instances -> a Datumaro dataset.

Datumaro 1.13's ``cityscapes`` format is semantic only: its exporter writes class ids into
``*_instanceIds.png`` and its importer makes one mask per class, so it merges every object of a
class and drops real Cityscapes instances (pixel value ``class_id * 1000 + k``). This importer
reads the instance ids as Cityscapes defines them::

    leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    gtFine/<split>/<city>/<name>_gtFine_instanceIds.png   value >= 1000: object k of class value // 1000
                                                          value <  1000: region of class value, no instance id

A region without instance id of an object class (e.g. a group of cars) becomes a crowd region.
Label ids come from Datumaro's label map (``label_colors.txt`` or ``dataset_meta.json``; every
label but the background is an object class), else from the official Cityscapes table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from otxlite.core.errors import OtxliteError

INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit"
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# The official classes with instances (cityscapesScripts' labels.py, hasInstances=True).
CITYSCAPES_OBJECT_CLASSES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus", 29: "caravan",
                             30: "trailer", 31: "train", 32: "motorcycle", 33: "bicycle"}


def is_cityscapes_instances(root: Path) -> bool:
    """Whether ``root`` holds ``gtFine/**/*_gtFine_instanceIds.png`` files."""
    return next((Path(root) / "gtFine").glob(f"**/*{INSTANCE_SUFFIX}"), None) is not None


def object_classes(root: Path) -> dict[int, str]:
    """Pixel class id -> label name of the object classes of the dataset in ``root``."""
    from datumaro.components.annotation import AnnotationType
    from datumaro.plugins.data_formats.cityscapes import CityscapesPath, make_cityscapes_categories, parse_label_map
    from datumaro.util.meta_file_util import has_meta_file, parse_meta_file

    root = Path(root)
    if has_meta_file(str(root)):
        label_map = parse_meta_file(str(root))
    elif (root / CityscapesPath.LABELMAP_FILE).is_file():
        label_map = parse_label_map(str(root / CityscapesPath.LABELMAP_FILE))
    else:
        return dict(CITYSCAPES_OBJECT_CLASSES)
    background = next((name for name, color in label_map.items() if color == (0, 0, 0)), "background")
    labels = make_cityscapes_categories(label_map)[AnnotationType.label]  # Datumaro's ids: background first
    return {i: category.name for i, category in enumerate(labels) if category.name != background}


def _image_files(root: Path) -> dict[tuple[str, str], Path]:
    """(split folder, item id) -> image file under ``leftImg8bit/``."""
    images = {}
    for path in sorted((root / "leftImg8bit").glob(f"*/**/*{IMAGE_SUFFIX}.*")):
        relative = path.relative_to(root / "leftImg8bit")
        item_id = relative.relative_to(relative.parts[0]).as_posix().rsplit(IMAGE_SUFFIX, 1)[0]
        images[relative.parts[0], item_id] = path
    return images


def _instances(path: Path, classes: dict[int, str], label_index: dict[int, int]) -> list[Any]:
    """One RLE mask per object (and per crowd region) of an instance-id PNG."""
    from datumaro.components.annotation import RleMask
    from pycocotools import mask as mask_utils

    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2:
        raise OtxliteError(f"{path} cannot be read as a single-channel instance-id PNG. Re-export it.")
    annotations = []
    for value in np.unique(ids):
        class_id, has_instance = (int(value) // 1000, True) if value >= 1000 else (int(value), False)
        if class_id not in classes:
            if has_instance:
                raise OtxliteError(
                    f"{path}: instance {value} has class id {class_id}, which the label map does not declare "
                    f"(declared: {', '.join(f'{i} {name}' for i, name in classes.items())}). Fix the label map."
                )
            continue  # background, void and stuff classes
        rle = mask_utils.encode(np.asfortranarray(ids == value, dtype=np.uint8))
        annotations.append(RleMask(rle=rle, label=label_index[class_id], id=len(annotations) + 1,
                                   group=len(annotations) + 1, attributes={"is_crowd": not has_instance}))
    return annotations


def import_cityscapes_instances(root: Path) -> Any:
    """Read a Cityscapes instances folder into a ``datumaro.Dataset`` (one RLE mask per instance)."""
    from datumaro.components.annotation import AnnotationType, LabelCategories
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    classes = object_classes(root)
    label_index = {class_id: i for i, class_id in enumerate(classes)}
    images = _image_files(root)
    items = []
    for path in sorted((root / "gtFine").glob(f"*/**/*{INSTANCE_SUFFIX}")):
        relative = path.relative_to(root / "gtFine")
        split = relative.parts[0]
        item_id = relative.relative_to(split).as_posix().removesuffix(INSTANCE_SUFFIX)
        image = images.pop((split, item_id), None)
        if image is None:
            expected = root / "leftImg8bit" / split / f"{item_id}{IMAGE_SUFFIX}.png"
            raise OtxliteError(f"{path} has no image: expected {expected}. Add the image or remove its annotation.")
        items.append(DatasetItem(id=item_id, subset=SPLITS.get(split, split), media=Image.from_file(str(image)),
                                 annotations=_instances(path, classes, label_index)))
    for (split, item_id), image in images.items():  # images without ground truth: negatives
        items.append(DatasetItem(id=item_id, subset=SPLITS.get(split, split), media=Image.from_file(str(image))))
    categories = LabelCategories.from_iterable(list(classes.values()))
    return Dataset.from_iterable(items, categories={AnnotationType.label: categories})
