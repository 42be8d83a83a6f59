"""Training tiles: a prepared COCO file -> a COCO file of tiles cut from its images (``core.tiling``'s grid,
without the whole image), with every instance's mask clipped to each tile it crosses.

An instance crossing a tile's edge is kept as the part inside (a partial mask, box recomputed); a part smaller
than ``MIN_SLIVER_PIXELS`` that is also under ``MIN_SLIVER_SHARE`` of its instance is a sliver and dropped (the
model could not tell what it is), counted in ``TileStats``. Tiles without objects (negatives) are kept at
``sampling_ratio`` (seeded). Crowd regions are clipped like the rest.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import atomic_path, write_json_atomic
from otxlite.core.images import read_image, write_image
from otxlite.core.tiling import TilingSettings, tile_windows
from otxlite.data.prepare import PreparedData, PreparedSubset

MIN_SLIVER_PIXELS = 16
MIN_SLIVER_SHARE = 0.25


@dataclass
class TileStats:
    """What cutting the tiles of one subset kept and dropped."""

    images: int = 0
    tiles: int = 0
    negatives_kept: int = 0
    negatives_dropped: int = 0
    partial_instances: int = 0
    slivers_dropped: int = 0


def object_sizes(ann_file: Path) -> list[float]:
    """sqrt(area) in pixels of every non-crowd instance of a COCO file (for ``tiling.tile_size: auto``)."""
    coco = json.loads(Path(ann_file).read_text())
    return [float(np.sqrt(a["area"])) for a in coco["annotations"] if not a.get("iscrowd") and a["area"] > 0]


def instance_mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The binary mask [H, W] of a COCO annotation (polygons or RLE)."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def _encoded(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def tile_subset(ann_file: Path, out_dir: Path, settings: TilingSettings, seed: int = 0) -> tuple[Path, TileStats]:
    """Cut the tiles of every image of ``ann_file`` into ``out_dir/<subset>/`` and write ``out_dir/<subset>.json``."""
    coco = json.loads(Path(ann_file).read_text())
    name = Path(ann_file).stem
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    rng = random.Random(seed)
    stats = TileStats()
    images, annotations = [], []
    for info in coco["images"]:
        image = read_image(info["file_name"])
        if image is None:
            raise OtxliteError(f"The image {info['file_name']} cannot be decoded, so no tiles can be cut from it.")
        height, width = image.shape[:2]
        masks = [_cropped(a, height, width) for a in by_image.get(info["id"], [])]
        stats.images += 1
        for x0, y0, x1, y1 in tile_windows(width, height, replace(settings, full_image=False)):
            pieces = []
            for annotation, (crop, cx0, cy0), whole in masks:
                part = np.zeros((y1 - y0, x1 - x0), bool)
                ix0, iy0 = max(x0, cx0), max(y0, cy0)
                ix1, iy1 = min(x1, cx0 + crop.shape[1]), min(y1, cy0 + crop.shape[0])
                if ix1 <= ix0 or iy1 <= iy0:
                    continue
                part[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = crop[iy0 - cy0:iy1 - cy0, ix0 - cx0:ix1 - cx0]
                area = int(part.sum())
                if area == 0:
                    continue
                if area < whole:
                    if area < MIN_SLIVER_PIXELS and area < MIN_SLIVER_SHARE * whole:
                        stats.slivers_dropped += 1
                        continue
                    stats.partial_instances += 1
                pieces.append({"segmentation": _encoded(part), "area": float(area), "bbox": _bbox(part),
                               "iscrowd": annotation.get("iscrowd", 0), "category_id": annotation["category_id"]})
            if not any(not p["iscrowd"] for p in pieces):
                if rng.random() >= settings.sampling_ratio:
                    stats.negatives_dropped += 1
                    continue
                stats.negatives_kept += 1
            image_id = len(images) + 1
            path = folder / f"{Path(info['file_name']).stem}_{info['id']}_{x0}_{y0}.png"
            with atomic_path(path) as tmp:
                write_image(tmp, image[y0:y1, x0:x1])
            images.append({"id": image_id, "file_name": str(path.resolve()), "width": x1 - x0, "height": y1 - y0})
            for piece in pieces:
                annotations.append({**piece, "id": len(annotations) + 1, "image_id": image_id})
            stats.tiles += 1
    out = write_json_atomic(Path(out_dir) / f"{name}.json",
                            {"images": images, "annotations": annotations, "categories": coco["categories"]},
                            indent=None)
    return out, stats


def _cropped(annotation: dict[str, Any], height: int, width: int
             ) -> tuple[dict[str, Any], tuple[np.ndarray, int, int], int]:
    """An annotation, its mask cut to the mask's own box (with the box's corner) and its area in pixels."""
    mask = instance_mask(annotation, height, width)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return annotation, (np.zeros((0, 0), bool), 0, 0), 0
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return annotation, (crop, int(xs.min()), int(ys.min())), len(xs)


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def tile_training_data(data: PreparedData, settings: TilingSettings, out_dir: Path, seed: int = 0
                       ) -> tuple[PreparedData, str]:
    """``data`` with its train subset replaced by its tiles (validation keeps whole images: it is tiled as the
    runtime tiles), and a line saying what was cut."""
    train = data.subsets["train"]
    ann_file, stats = tile_subset(train.ann_file, out_dir, settings, seed=seed)
    subsets = {**data.subsets, "train": PreparedSubset("train", ann_file, replace(train.stats, images=stats.tiles))}
    cut = (f"train {stats.images} images -> {stats.tiles} tiles ({stats.negatives_kept} without objects kept, "
           f"{stats.negatives_dropped} dropped; {stats.partial_instances} instances cut at a tile edge, "
           f"{stats.slivers_dropped} slivers dropped)")
    return replace(data, subsets=subsets), cut
