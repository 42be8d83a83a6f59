"""Datumaro items -> a COCO instances file that MMDetection's CocoDataset and pycocotools read.

Image paths stay absolute, so images are read from where they are by the data loader.
Every kind of instance annotation becomes a COCO instance: polygons stay polygons (parts of one
object, which Datumaro imports as separate polygons of one group, are merged), masks become RLE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError


@dataclass
class ConversionStats:
    """What went into one converted subset, for the pre-training table."""

    images: int = 0
    empty_images: int = 0
    instances: Counter = field(default_factory=Counter)
    crowd: int = 0
    bad_images_skipped: int = 0
    box_only_skipped: int = 0
    degenerate_dropped: int = 0


def _polygon_area(points: list[float]) -> float:
    xs, ys = np.asarray(points[0::2]), np.asarray(points[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def read_image_size(path: str) -> tuple[int, int] | None:
    """(height, width) from an image file's header, or None if it is not a readable image."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (OSError, SyntaxError, ValueError):
        return None


def _rle_of(annotation: Any, height: int, width: int) -> dict[str, Any]:
    rle = getattr(annotation, "rle", None)
    if isinstance(rle, dict) and "counts" in rle:
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
    else:
        rle = mask_utils.encode(np.asfortranarray(annotation.image.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _instances_of(item: Any, height: int, width: int, stats: ConversionStats) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of one item."""
    from datumaro.components.annotation import AnnotationType

    polygons: dict[tuple[int, Any], list[list[float]]] = {}
    crowd_flags: dict[tuple[int, Any], bool] = {}
    instances = []
    shaped_groups = {ann.group for ann in item.annotations
                     if ann.group and ann.type in (AnnotationType.polygon, AnnotationType.mask)}
    for index, ann in enumerate(item.annotations):
        crowd = bool(ann.attributes.get("is_crowd", False))
        if ann.type == AnnotationType.polygon:
            points = [float(v) for v in ann.points]
            if len(points) < 6 or _polygon_area(points) < 1.0:
                stats.degenerate_dropped += 1
                continue
            key = (ann.label, ann.group if ann.group else f"single-{index}")
            polygons.setdefault(key, []).append(points)
            crowd_flags[key] = crowd_flags.get(key, False) or crowd
        elif ann.type == AnnotationType.mask:
            rle = _rle_of(ann, height, width)
            area = float(mask_utils.area(rle))
            if area < 1.0:
                stats.degenerate_dropped += 1
                continue
            instances.append({"label": ann.label, "segmentation": rle, "area": area,
                              "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(crowd)})
        elif ann.type == AnnotationType.bbox and ann.group not in shaped_groups:
            stats.box_only_skipped += 1
    for (label, _), parts in polygons.items():
        xs = np.concatenate([p[0::2] for p in parts])
        ys = np.concatenate([p[1::2] for p in parts])
        x0, y0 = float(xs.min()), float(ys.min())
        instances.append({"label": label, "segmentation": parts, "area": sum(_polygon_area(p) for p in parts),
                          "bbox": [x0, y0, float(xs.max()) - x0, float(ys.max()) - y0],
                          "iscrowd": int(crowd_flags[(label, _)])})
    return instances


def items_to_coco(
    items: list[Any], item_labels: list[str], labels: list[str], skip_bad_images: bool = False
) -> tuple[dict[str, Any], ConversionStats]:
    """Build a COCO instances dict for ``items``; category ids are 1 + the index in ``labels``.

    ``item_labels`` are the names of the label indices used by the items' annotations. Every image
    header is read once (size, readability); pixels are left to the data loader.
    """
    stats = ConversionStats()
    images, annotations = [], []
    category_of = {i: labels.index(name) + 1 for i, name in enumerate(item_labels) if name in labels}
    for item in items:
        path = getattr(item.media, "path", None)
        if not path or not Path(path).is_file():
            raise OtxliteError(
                f"The annotation of image '{item.id}' points to {path or 'no file'}, which does not exist. "
                "Add the image or remove its annotation."
            )
        size = read_image_size(path)
        if size is None:
            if skip_bad_images:
                stats.bad_images_skipped += 1
                continue
            raise OtxliteError(
                f"The image {path} cannot be read (corrupt or not an image). Replace or remove it, "
                "or pass --skip-bad-images to train without it."
            )
        height, width = size
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": str(Path(path).resolve()), "width": width, "height": height})
        instances = _instances_of(item, height, width, stats)
        for instance in instances:
            label = instance.pop("label")
            if label is None or label not in category_of:
                raise OtxliteError(
                    f"Image '{item.id}' has an annotation with label id {label}, which the dataset does not declare "
                    f"(declared: {', '.join(item_labels) or 'none'}). Fix the categories of the annotation file."
                )
            instance.update(id=len(annotations) + 1, image_id=image_id, category_id=category_of[label])
            annotations.append(instance)
            if instance["iscrowd"]:
                stats.crowd += 1
            else:
                stats.instances[labels[category_of[label] - 1]] += 1
        stats.images += 1
        stats.empty_images += not any(not a["iscrowd"] for a in instances)
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(labels)]
    return {"images": images, "annotations": annotations, "categories": categories}, stats
