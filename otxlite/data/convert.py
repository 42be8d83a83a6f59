"""Datumaro items -> a COCO instances file that MMDetection's CocoDataset and pycocotools read.

Image paths stay absolute, so images are read from where they are by the data loader.
Every kind of instance annotation becomes a COCO instance: polygons stay polygons (parts of one
object, which Datumaro imports as separate polygons of one group, are merged), masks become RLE.

Sizes follow one rule for every format: an image is what a viewer shows (EXIF orientation applied,
``otxlite.core.images``). Where an annotation file declares another size than the file has (a resized
export), annotations with the same aspect ratio are scaled to the file, counted and named in one warning;
another aspect ratio is an error naming the file and both sizes: masks never land misaligned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError
from otxlite.core.images import TRANSPOSED, exif_orientation, read_image_size

ASPECT_TOLERANCE = 0.01  # declared and real aspect ratios this close are one image resized (sizes are rounded)
IGNORE_REGION = "ignore_region"  # attribute of a label-less crowd region that ignores detections of every label


@dataclass
class ConversionStats:
    """What went into one converted subset, for the pre-training table."""

    images: int = 0
    empty_images: int = 0
    instances: Counter = field(default_factory=Counter)
    crowd: int = 0
    bad_images_skipped: int = 0
    box_only_skipped: int = 0
    other_shapes_skipped: int = 0
    degenerate_dropped: int = 0
    rescaled_images: int = 0
    first_rescaled: str = ""


def _polygon_area(points: list[float]) -> float:
    """The shoelace area of a flat polygon [x1, y1, x2, y2, ...]."""
    xy = np.asarray(points, dtype=np.float64)
    xs, ys = xy[0::2], xy[1::2]
    return float(abs(xs[:-1] @ ys[1:] - xs[1:] @ ys[:-1] + xs[-1] * ys[0] - xs[0] * ys[-1]) / 2)


def _describe(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def annotation_scale(declared: tuple[int, int] | None, actual: tuple[int, int], path: str,
                     what: str = "its annotations declare") -> tuple[float, float] | None:
    """(x, y) factors that map coordinates drawn on a ``declared`` (height, width) image onto the file's
    ``actual`` size; None when they agree. Another aspect ratio is an error: nothing could place the masks."""
    if declared is None or tuple(declared) == tuple(actual):
        return None
    (dh, dw), (ah, aw) = declared, actual
    if dh > 0 and dw > 0 and abs((dw / dh) / (aw / ah) - 1) <= ASPECT_TOLERANCE:
        return aw / dw, ah / dh
    orientation = exif_orientation(path)
    turned = ""
    if orientation in TRANSPOSED and (dh, dw) == (aw, ah):
        turned = (f" The file's EXIF orientation ({orientation}) turns its stored {_describe((dh, dw))} pixels by 90 "
                  "degrees, as every viewer shows it; the annotations were made on the unturned pixels. Save the "
                  "image upright (e.g. PIL.ImageOps.exif_transpose) and annotate it again, or drop its annotation.")
    raise OtxliteError(
        f"The image {path} is {_describe(actual)} pixels (as a viewer shows it), but {what} "
        f"{_describe((dh, dw))}: another aspect ratio, so its masks cannot be placed on it.{turned} "
        "Point the annotation at the image it was drawn on, or export the annotations again from the tool."
    )


def _mask_of(annotation: Any) -> np.ndarray:
    """A mask annotation's bitmap (bool), at the size it was drawn on."""
    rle = getattr(annotation, "rle", None)
    if isinstance(rle, dict) and "counts" in rle:
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        return mask_utils.decode(rle).astype(bool)
    return np.asarray(annotation.image).astype(bool)


def _encode(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": list(mask.shape), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _mask_rle(annotation: Any, height: int, width: int, path: str) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The mask of ``annotation`` as COCO RLE at the image's (``height``, ``width``), scaled if drawn at another size;
    also that other size (None if it was drawn at the image's)."""
    rle = getattr(annotation, "rle", None)
    if isinstance(rle, dict) and isinstance(rle.get("counts"), (str, bytes)) and tuple(rle["size"]) == (height, width):
        counts = rle["counts"]
        counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return {"size": [height, width], "counts": counts}, None
    mask = _mask_of(annotation)
    if mask.shape == (height, width):
        return _encode(mask), None
    annotation_scale(mask.shape, (height, width), path, "a mask of its annotations is")
    resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return _encode(resized), mask.shape


def _instances_of(item: Any, height: int, width: int, scale: tuple[float, float] | None, path: str,
                  stats: ConversionStats) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """COCO annotations (without ids) of one item, on its (``height``, ``width``) image (``label`` None marks an
    ignore region of every label), and the other size its masks were drawn at, if any."""
    from datumaro.components.annotation import AnnotationType

    polygons: dict[tuple[Any, Any], list[list[float]]] = {}
    crowd_flags: dict[tuple[Any, Any], bool] = {}
    areas: dict[tuple[Any, Any], float] = {}
    instances = []
    drawn_at = None
    shaped_groups = {ann.group for ann in item.annotations
                     if ann.group and ann.type in (AnnotationType.polygon, AnnotationType.mask)}
    for index, ann in enumerate(item.annotations):
        crowd = bool(ann.attributes.get("is_crowd", False)) or bool(ann.attributes.get(IGNORE_REGION, False))
        if ann.type == AnnotationType.polygon:
            points = [float(v) for v in ann.points]
            if scale:
                points = [v * scale[i % 2] for i, v in enumerate(points)]
            area = _polygon_area(points) if len(points) >= 6 else 0.0
            if area < 1.0:
                stats.degenerate_dropped += 1
                continue
            key = (ann.label, ann.group if ann.group else f"single-{index}")
            polygons.setdefault(key, []).append(points)
            areas[key] = areas.get(key, 0.0) + area
            crowd_flags[key] = crowd_flags.get(key, False) or crowd
        elif ann.type == AnnotationType.mask:
            rle, other_size = _mask_rle(ann, height, width, path)
            drawn_at = drawn_at or other_size
            area = float(mask_utils.area(rle))
            if area < 1.0:
                stats.degenerate_dropped += 1
                continue
            instances.append({"label": ann.label, "segmentation": rle, "area": area,
                              "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(crowd)})
        elif ann.type == AnnotationType.bbox and ann.group not in shaped_groups:
            stats.box_only_skipped += 1
        elif ann.type in (AnnotationType.points, AnnotationType.polyline):
            stats.other_shapes_skipped += 1
    for (label, _), parts in polygons.items():
        xs = np.concatenate([p[0::2] for p in parts])
        ys = np.concatenate([p[1::2] for p in parts])
        x0, y0 = float(xs.min()), float(ys.min())
        instances.append({"label": label, "segmentation": parts, "area": areas[(label, _)],
                          "bbox": [x0, y0, float(xs.max()) - x0, float(ys.max()) - y0],
                          "iscrowd": int(crowd_flags[(label, _)])})
    return instances, drawn_at


def _image_size(item: Any, path: str, skip_bad_images: bool) -> tuple[int, int] | None:
    """The (height, width) of an item's image file, as a viewer shows it; None to skip an unreadable one."""
    size = read_image_size(path)
    if size is None and not skip_bad_images:
        raise OtxliteError(
            f"The image {path} cannot be read (corrupt or not an image). Replace or remove it, "
            "or pass --skip-bad-images to train without it."
        )
    return size


def _declared_size(item: Any) -> tuple[int, int] | None:
    """The (height, width) the annotation file declares for the item's image, without reading the image."""
    media = item.media
    return tuple(media.size) if getattr(media, "has_size", False) else None


def items_to_coco(
    items: list[Any], item_labels: list[str], labels: list[str], skip_bad_images: bool = False
) -> tuple[dict[str, Any], ConversionStats]:
    """Build a COCO instances dict for ``items``; category ids are 1 + the index in ``labels``.

    ``item_labels`` are the names of the label indices used by the items' annotations. Every image
    header is read once (size, orientation, readability); pixels are left to the data loader. A label-less
    ignore region becomes one crowd region per label, so no label's detections count there.
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
        size = _image_size(item, path, skip_bad_images)
        if size is None:
            stats.bad_images_skipped += 1
            continue
        height, width = size
        declared = _declared_size(item)
        scale = annotation_scale(declared, size, path)
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": str(Path(path).resolve()), "width": width, "height": height})
        instances, masks_drawn_at = _instances_of(item, height, width, scale, path, stats)
        drawn_at = declared if scale else masks_drawn_at
        if drawn_at:
            stats.rescaled_images += 1
            stats.first_rescaled = (stats.first_rescaled
                                    or f"{path} ({_describe(drawn_at)} declared, {_describe(size)} on disk)")
        for instance in instances:
            label = instance.pop("label")
            if label is None and instance["iscrowd"]:
                copies = [dict(instance, category_id=category) for category in range(1, len(labels) + 1)]
            elif label is None or label not in category_of:
                raise OtxliteError(
                    f"Image '{item.id}' has an annotation with label id {label}, which the dataset does not declare "
                    f"(declared: {', '.join(item_labels) or 'none'}). Fix the categories of the annotation file."
                )
            else:
                copies = [dict(instance, category_id=category_of[label])]
            for copy in copies:
                copy.update(id=len(annotations) + 1, image_id=image_id)
                annotations.append(copy)
            if instance["iscrowd"]:
                stats.crowd += 1
            else:
                stats.instances[labels[category_of[label] - 1]] += 1
        stats.images += 1
        stats.empty_images += not any(not a["iscrowd"] for a in instances)
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(labels)]
    return {"images": images, "annotations": annotations, "categories": categories}, stats


def rescale_warning(stats: ConversionStats, subset: str) -> str | None:
    """The one warning of a subset whose annotation files declared other image sizes (same aspect ratio)."""
    if not stats.rescaled_images:
        return None
    return (f"Warning: {stats.rescaled_images} {subset} image(s) are another size than their annotations declare "
            f"(first: {stats.first_rescaled}); the annotations were scaled to the files, as the aspect ratios agree.")
