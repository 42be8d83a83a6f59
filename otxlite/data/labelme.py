"""labelme JSON files -> a Datumaro dataset (Datumaro's ``label_me`` is another format: MIT LabelMe's XML).

labelme (``pip install labelme``) saves one JSON file per image, usually beside it::

    {"version": "5.8.1", "flags": {}, "imagePath": "photo.jpg", "imageData": null | "<base64 image>",
     "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "cat", "points": [[x, y], ...], "group_id": null | 3, "shape_type": "polygon",
                 "mask": null | "<base64 PNG>", "flags": {}, "description": ""}]}

What becomes an instance follows labelme's own instance-segmentation example (``labelme2coco.py``): shapes that
share a ``label`` and a ``group_id`` are one instance (an object drawn in parts); ``polygon``, ``rectangle``,
``circle``, ``oriented_rectangle`` and ``mask`` shapes (the mask is a PNG of the box given by its two points) are
instance masks; the label ``__ignore__`` marks a region where no detection counts (a crowd region of every
label). ``point``, ``points``, ``line`` and ``linestrip`` shapes are skipped and counted. ``imagePath`` is relative
to the JSON file; when that image is missing, the image embedded in ``imageData`` is used (written once into
otxlite's cache). Coordinates are in the pixels of the image as labelme showed it (EXIF orientation applied) at
``imageHeight`` x ``imageWidth``; the converter scales them if the file on disk has another size. JSON files in a
``train``/``val``/``test`` folder form that subset. Labels are the sorted names of the area shapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import cv2
import numpy as np

from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import cache_dir
from otxlite.core.images import read_image_size
from otxlite.data.convert import IGNORE_REGION
from otxlite.data.split import VALIDATION_SUBSETS

IGNORE_LABEL = "__ignore__"
AREA_SHAPES = ("polygon", "rectangle", "circle", "oriented_rectangle", "mask")
SKIPPED_SHAPES = ("point", "points", "line", "linestrip")
DETECT_FILES = 20  # JSON files looked at to recognise a labelme folder
SNIFF_BYTES = 4096  # of a JSON file's head, where labelme's "shapes" key is
SUBSET_FOLDERS = {"train": "train", "test": "test", **{name: "val" for name in VALIDATION_SUBSETS}}
CIRCLE_CHORD_PX = 1.0  # a circle becomes a polygon whose chords stay this close to the arc (as labelme2coco)
CIRCLE_MIN_VERTICES = 12


def _is_labelme_object(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data


def _json_files(root: Path) -> list[Path]:
    return sorted(path for path in Path(root).rglob("*.json") if path.is_file())


def _starts_like_labelme(path: Path) -> bool:
    """Whether a JSON file's head holds a ``shapes`` key (labelme writes it before the shapes, after two short
    keys), so that detection never parses a large file of another format (a COCO file of 500 MB)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and b'"shapes"' in head


def is_labelme(root: Path) -> bool:
    """Whether ``root`` holds labelme JSON files (one of the first ``DETECT_FILES`` JSON files is one)."""
    for path in _json_files(root)[:DETECT_FILES]:
        if not _starts_like_labelme(path):
            continue
        try:
            if _is_labelme_object(json.loads(path.read_text(encoding="utf-8"))):
                return True
        except (OSError, UnicodeDecodeError, ValueError):
            continue
    return False


def circle_polygon(center: tuple[float, float], edge: tuple[float, float]) -> list[float]:
    """A circle given by its centre and a point on it, as a flat polygon within ``CIRCLE_CHORD_PX`` of the arc."""
    radius = math.hypot(edge[0] - center[0], edge[1] - center[1])
    count = CIRCLE_MIN_VERTICES
    if radius > CIRCLE_CHORD_PX:
        count = max(CIRCLE_MIN_VERTICES, int(math.pi / math.acos(1.0 - CIRCLE_CHORD_PX / radius)))
    angles = 2.0 * math.pi * np.arange(count) / count
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], 1).ravel().tolist()


@dataclass
class _Instance:
    """The shapes of one (label, group_id): polygons (flat, in pixels) and bitmaps (full image size)."""

    label: str
    polygons: list[list[float]] = field(default_factory=list)
    bitmaps: list[np.ndarray] = field(default_factory=list)


class _LabelFile:
    """One labelme JSON file being read; ``fail`` names the file (and shape) in the error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def fail(self, problem: str) -> OtxliteError:
        return OtxliteError(f"{self.path}: {problem}. Open the file in labelme and save it again, or remove it.")

    def declared_size(self) -> tuple[int, int] | None:
        height, width = self.data.get("imageHeight"), self.data.get("imageWidth")
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width))
        return (height, width) if ok else None

    def image_path(self) -> Path:
        """The image file: ``imagePath`` beside the JSON file, else the embedded ``imageData`` from the cache."""
        name = self.data.get("imagePath")
        if not isinstance(name, str) or not name:
            raise self.fail("'imagePath' must name the image file")
        relative = PurePosixPath(PureWindowsPath(name).as_posix()) if "\\" in name else PurePosixPath(name)
        path = self.path.parent / relative
        if path.is_file():
            return path
        embedded = self.data.get("imageData")
        if not embedded:
            raise OtxliteError(
                f"{self.path}: its image {path} does not exist and the file embeds no image (imageData is empty). "
                "Put the image beside the JSON file under that name, or save it in labelme with the image data."
            )
        try:
            data = base64.b64decode(embedded, validate=False)
        except (binascii.Error, ValueError) as err:
            raise self.fail(f"its image {path} does not exist and 'imageData' is not base64 ({err})") from err
        cached = cache_dir("labelme") / f"{hashlib.sha1(data).hexdigest()[:20]}{relative.suffix or '.png'}"
        if not cached.is_file():
            tmp = cached.with_suffix(cached.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(cached)
        return cached

    def instances(self, size: tuple[int, int] | None) -> tuple[dict[tuple[str, Any], _Instance], list[Any]]:
        """Instances by (label, group), and the skipped shapes (point and line kinds) as ``points`` lists."""
        instances: dict[tuple[str, Any], _Instance] = {}
        skipped = []
        for number, shape in enumerate(self.data["shapes"]):
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise self.fail(f"shape {number} has no 'label'")
            kind = shape.get("shape_type") or "polygon"
            try:
                points = np.asarray(shape.get("points"), dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError) as err:
                raise self.fail(f"shape {number}: 'points' must be a list of [x, y] pairs") from err
            if kind in SKIPPED_SHAPES:
                skipped.append(points.ravel().tolist())
                continue
            if kind not in AREA_SHAPES:
                raise self.fail(f"shape {number} has the unknown shape_type '{kind}' (known: "
                                f"{', '.join(AREA_SHAPES + SKIPPED_SHAPES)})")
            group = shape.get("group_id")
            key = (shape["label"], group if group is not None else f"shape-{number}")
            instance = instances.setdefault(key, _Instance(shape["label"]))
            if kind == "mask":
                instance.bitmaps.append(self._mask(shape, points, number, size))
            else:
                instance.polygons.append(self._polygon(kind, points, number))
        return instances, skipped

    def _polygon(self, kind: str, points: np.ndarray, number: int) -> list[float]:
        if kind in ("rectangle", "circle") and len(points) != 2:
            raise self.fail(f"shape {number}: a {kind} needs 2 points, it has {len(points)}")
        if kind == "rectangle":
            (x0, y0), (x1, y1) = np.sort(points, axis=0)
            return [x0, y0, x1, y0, x1, y1, x0, y1]
        if kind == "circle":
            return circle_polygon(tuple(points[0]), tuple(points[1]))
        return points.ravel().tolist()

    def _mask(self, shape: dict[str, Any], points: np.ndarray, number: int,
              size: tuple[int, int] | None) -> np.ndarray:
        """A ``mask`` shape pasted into a bitmap of the image size (its PNG covers the box of its two points)."""
        if size is None:
            raise self.fail(f"shape {number} is a mask, but the image size is unknown (no imageHeight/imageWidth "
                            "and no readable image)")
        try:
            png = base64.b64decode(shape.get("mask") or "", validate=False)
            crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        except (binascii.Error, ValueError, cv2.error):
            crop = None
        if crop is None or len(points) != 2:
            raise self.fail(f"shape {number}: a mask shape needs 2 points and a base64 PNG in 'mask'")
        bitmap = np.zeros(size, bool)
        x0, y0 = points[0].astype(int)  # as labelme pastes it
        height, width = min(crop.shape[0], size[0] - y0), min(crop.shape[1], size[1] - x0)
        if x0 < 0 or y0 < 0 or height <= 0 or width <= 0:
            raise self.fail(f"shape {number}: the mask's box starts at ({x0}, {y0}), outside the "
                            f"{size[1]}x{size[0]} image")
        bitmap[y0:y0 + height, x0:x0 + width] = crop[:height, :width] > 0
        return bitmap


def _rasterized(instance: _Instance, size: tuple[int, int]) -> np.ndarray:
    """All parts of an instance that has a mask shape, as one bitmap."""
    bitmap = np.zeros(size, np.uint8)
    for polygon in instance.polygons:
        cv2.fillPoly(bitmap, [np.round(np.asarray(polygon).reshape(-1, 2)).astype(np.int32)], 1)
    for part in instance.bitmaps:
        bitmap |= part.astype(np.uint8)
    return bitmap.astype(bool)


def _subset(path: Path, root: Path) -> str | None:
    folders = [part.lower() for part in path.relative_to(root).parts[:-1]]
    return next((SUBSET_FOLDERS[part] for part in folders if part in SUBSET_FOLDERS), None)


def _read(path: Path) -> dict[str, Any] | None:
    """A labelme file's content, None for a JSON file of another kind; a file that does not parse is an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise OtxliteError(f"{path}: not UTF-8 text ({err}). Save it again in labelme.") from err
    except json.JSONDecodeError as err:
        raise OtxliteError(f"{path}, line {err.lineno}, column {err.colno}: the JSON does not parse ({err.msg}). "
                           "Fix the file or save it again in labelme.") from err
    return data if _is_labelme_object(data) else None


def import_labelme(root: Path) -> Any:
    """Read every labelme JSON file under ``root`` into a ``datumaro.Dataset``."""
    from datumaro.components.annotation import AnnotationType, LabelCategories, Mask, Points, Polygon
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    files = [(path, data) for path in _json_files(root) if (data := _read(path)) is not None]
    if not files:
        raise OtxliteError(f"{root}: no labelme JSON files (with 'shapes' and 'imagePath') were found.")
    names = sorted({shape["label"] for _, data in files for shape in data["shapes"]
                    if isinstance(shape, dict) and isinstance(shape.get("label"), str)
                    and (shape.get("shape_type") or "polygon") in AREA_SHAPES} - {IGNORE_LABEL})
    label_ids = {name: i for i, name in enumerate(names)}
    items = []
    for path, data in files:
        label_file = _LabelFile(path, data)
        image = label_file.image_path()
        declared = label_file.declared_size()
        size = declared or read_image_size(image)
        instances, skipped = label_file.instances(size)
        annotations: list[Any] = [Points(points) for points in skipped]
        for group, instance in enumerate(instances.values(), start=1):
            ignore = instance.label == IGNORE_LABEL
            common = dict(label=None if ignore else label_ids[instance.label], group=group, id=group,
                          attributes={IGNORE_REGION: True} if ignore else {})
            if instance.bitmaps:
                annotations.append(Mask(image=_rasterized(instance, size), **common))
            else:
                annotations += [Polygon(polygon, **common) for polygon in instance.polygons]
        media = Image.from_file(str(image), size=declared) if declared else Image.from_file(str(image))
        item_id = path.relative_to(root).with_suffix("").as_posix()
        items.append(DatasetItem(id=item_id, subset=_subset(path, root), media=media, annotations=annotations))
    return Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)})
