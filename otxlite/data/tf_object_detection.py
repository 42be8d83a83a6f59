"""TensorFlow Object Detection API TFRecords -> a Datumaro dataset, without TensorFlow.

A folder of ``*.tfrecord`` / ``*.record`` files (shards such as ``train.record-00000-of-00004`` too), the
subset named by the file name, and optionally a label map ``*.pbtxt`` (``item { id: 1 name: 'cat' }``).
Each record is a ``tf.train.Example`` as the API's ``create_coco_tf_record.py`` writes it::

    image/encoded, image/filename, image/height, image/width
    image/object/bbox/xmin, xmax, ymin, ymax   normalized to [0, 1]
    image/object/class/label                   label map ids (from 1)
    image/object/class/text                    label names
    image/object/is_crowd                      optional
    image/object/mask                          one PNG per object, or floats: objects x height x width

Training reads image files, so each image is written once into otxlite's cache
(``~/.cache/otxlite/tfrecord/``). Without a label map, the labels are the class texts, ordered by class id.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from otxlite.core.images import read_image_size
from otxlite.data.split import subset_from_file_name
from otxlite.data.tfrecord import FeatureValue, parse_example, read_records
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import atomic_path, cache_dir

RECORD_PATTERNS = ("*.tfrecord", "*.tfrecords", "*.record", "*.tfrecord-*-of-*", "*.record-*-of-*")
BOX_KEYS = tuple(f"image/object/bbox/{k}" for k in ("xmin", "ymin", "xmax", "ymax"))
# The per-object lists and their types (floats come as an ndarray).
OBJECT_KEYS = {**{key: np.ndarray for key in BOX_KEYS}, "image/object/class/label": int,
               "image/object/class/text": bytes, "image/object/is_crowd": int}
_IMAGE_SUFFIXES = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png", "bmp": ".bmp"}
_KIND_NAMES = {bytes: "byte strings", int: "int64 values", np.ndarray: "floats"}


def record_files(root: Path) -> list[Path]:
    """The TFRecord files directly in ``root``."""
    return sorted({path for pattern in RECORD_PATTERNS for path in Path(root).glob(pattern) if path.is_file()})


def is_tf_object_detection(root: Path) -> bool:
    """Whether ``root`` holds TFRecord files."""
    return bool(record_files(root))


def read_label_map(path: Path) -> dict[int, str]:
    """Label map id -> name from a ``.pbtxt`` (``item { id: 1 name: 'cat' display_name: 'Cat' }``)."""
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8", errors="replace"))
    names: dict[int, str] = {}
    for number, body in enumerate(re.findall(r"\bitem\s*\{(.*?)\}", text, flags=re.DOTALL), start=1):
        id_match = re.search(r"(?<!_)\bid\s*:\s*(-?\d+)", body)
        name_match = re.search(r"(?<!_)\bname\s*:\s*(['\"])(.*?)\1", body)
        if not id_match or not name_match:
            raise OtxliteError(f"{path}: item {number} of the label map needs an 'id: N' and a \"name: '...'\". "
                               "Fix the label map (see the TensorFlow Object Detection API's label map format).")
        names[int(id_match.group(1))] = name_match.group(2)
    if not names:
        raise OtxliteError(f"{path}: the label map has no 'item {{ id: N name: '...' }}' entries. Fix or remove it.")
    return names


def find_label_map(root: Path) -> Path | None:
    """The label map in ``root``: the only ``*.pbtxt``, or the one named like ``label_map.pbtxt``."""
    candidates = sorted(Path(root).glob("*.pbtxt"))
    named = [path for path in candidates if "label" in path.stem.lower()]
    return (named or candidates or [None])[0]


@dataclass
class _Object:
    class_id: int | None
    text: str | None
    crowd: bool
    rle: dict[str, Any] | None  # the mask, or None for a box-only object
    box: tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass
class _Record:
    where: str
    item_id: str
    subset: str
    image: Path
    size: tuple[int, int] | None
    objects: list[_Object] = field(default_factory=list)


class _Example:
    """One parsed record; ``fail`` names the file and record index in the error."""

    def __init__(self, features: dict[str, FeatureValue], where: str) -> None:
        self.features, self.where = features, where

    def fail(self, problem: str) -> OtxliteError:
        return OtxliteError(
            f"{self.where}: {problem}. Each record must be a tf.train.Example of the TensorFlow Object Detection "
            "API: image/encoded, image/object/bbox/xmin..ymax (normalized), image/object/class/text or "
            "image/object/class/label, image/object/mask (one PNG per object, or objects x height x width floats)."
        )

    def get(self, key: str, kind: type) -> Any:
        """The values of ``key`` (empty if absent), checked to be bytes (list), floats (ndarray) or ints (list)."""
        value = self.features.get(key, [])
        if isinstance(value, list) and not value:  # absent, or empty (an empty list has no type on the wire)
            return np.zeros(0, np.float32) if kind is np.ndarray else []
        is_kind = isinstance(value, np.ndarray) if kind is np.ndarray else (
            isinstance(value, list) and all(isinstance(v, bytes if kind is bytes else int) for v in value))
        if not is_kind:
            raise self.fail(f"'{key}' is not a list of {_KIND_NAMES[kind]}")
        return value

    def texts(self, key: str) -> list[str]:
        return [value.decode("utf-8", errors="replace") for value in self.get(key, bytes)]


def _image_name(example: _Example, index: int) -> str:
    """``image/filename`` without folders, else a name from the record index and ``image/format``."""
    filename = Path((example.texts("image/filename") or [""])[0]).name
    image_format = (example.texts("image/format") or ["jpeg"])[0].lower()
    return filename or f"{index:06d}{_IMAGE_SUFFIXES.get(image_format, '.jpg')}"


def _image_file(example: _Example, path: Path) -> Path:
    """Write the record's image to ``path`` (once: an unchanged file is kept)."""
    encoded = example.get("image/encoded", bytes)
    if len(encoded) != 1:
        raise example.fail(f"'image/encoded' holds {len(encoded)} images instead of one")
    if not path.is_file() or path.stat().st_size != len(encoded[0]):
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded[0])
    return path


def _masks(example: _Example, count: int, size: tuple[int, int]) -> list[np.ndarray] | None:
    """The objects' masks (bool, image size), or None when the record has none."""
    value = example.features.get("image/object/mask")
    if value is None or (isinstance(value, list) and not value and count == 0):
        return None
    height, width = size
    if isinstance(value, np.ndarray):  # dense: objects x height x width floats
        if value.size != count * height * width:
            raise example.fail(f"'image/object/mask' holds {value.size} floats; {count} objects of {height}x{width} "
                               f"pixels need {count * height * width}")
        return list(value.reshape(count, height, width) > 0.5)
    pngs = example.get("image/object/mask", bytes)
    if len(pngs) != count:
        raise example.fail(f"'image/object/mask' holds {len(pngs)} masks for {count} objects")
    masks = []
    for number, png in enumerate(pngs):
        mask = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != size:
            found = "is not an image" if mask is None else f"is {mask.shape[0]}x{mask.shape[1]}"
            raise example.fail(f"mask {number} of 'image/object/mask' {found}; expected a {height}x{width} PNG")
        masks.append(mask > 0)
    return masks


def _objects(example: _Example, size: tuple[int, int]) -> list[_Object]:
    from pycocotools import mask as mask_utils

    lists = {key: example.get(key, kind) for key, kind in OBJECT_KEYS.items()}
    lists["image/object/class/text"] = example.texts("image/object/class/text")
    lengths = {key: len(values) for key, values in lists.items() if len(values)}
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{key}: {n}" for key, n in lengths.items())
        raise example.fail(f"the object lists differ in length ({found})")
    count = next(iter(lengths.values()), 0)
    has_boxes = all(key in lengths for key in BOX_KEYS)
    if any(key in lengths for key in BOX_KEYS) and not has_boxes:
        raise example.fail("boxes need all four of image/object/bbox/xmin, ymin, xmax and ymax")
    masks = _masks(example, count, size)
    if masks is None and count and not has_boxes:
        raise example.fail("the objects have neither masks nor boxes")
    height, width = size
    objects = []
    for k in range(count):
        box = (0.0, 0.0, 0.0, 0.0)
        if has_boxes:
            x0, y0, x1, y1 = (float(lists[key][k]) for key in BOX_KEYS)
            box = (x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)
        labels, texts, crowd = (lists[f"image/object/{key}"] for key in ("class/label", "class/text", "is_crowd"))
        rle = mask_utils.encode(np.asfortranarray(masks[k], dtype=np.uint8)) if masks is not None else None
        objects.append(_Object(class_id=labels[k] if labels else None, text=texts[k] if texts else None,
                               crowd=bool(crowd[k]) if crowd else False, rle=rle, box=box))
    return objects


def _read_record_file(path: Path) -> list[_Record]:
    """Parse every record of one TFRecord file, writing its images into the cache."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    media_dir = cache_dir("tfrecord", f"{path.name}-{key}")
    records = []
    for index, data in enumerate(read_records(path)):
        where = f"{path}, record {index}"
        try:
            example = _Example(parse_example(data), where)
        except ValueError as err:
            raise OtxliteError(f"{where}: the record is not a tf.train.Example ({err}). Write the file again.") from err
        name = _image_name(example, index)
        image = _image_file(example, media_dir / f"{index:06d}_{name}")
        # The size the record declares, which its masks have; the converter scales them to the file if it differs.
        heights, widths = example.get("image/height", int), example.get("image/width", int)
        size = (heights[0], widths[0]) if heights and widths else read_image_size(str(image))
        # Without a readable image the converter reports it by name (or skips it with --skip-bad-images).
        objects = _objects(example, size) if size else []
        records.append(_Record(where, Path(name).stem, subset_from_file_name(path), image, size, objects))
    return records


def _label_names(records: list[_Record], label_map: dict[int, str] | None, root: Path) -> list[str]:
    """The labels: the label map's names by id, else the class texts ordered by their class ids."""
    if label_map is not None:
        return [label_map[i] for i in sorted(label_map)]
    first_id: dict[str, float] = {}
    for record in records:
        for obj in record.objects:
            if obj.text is None:
                raise OtxliteError(f"{record.where}: an object has no 'image/object/class/text', and {root} has no "
                                   "label map to name its class id. Put the label map (.pbtxt) beside the records.")
            first_id[obj.text] = min(first_id.get(obj.text, float("inf")), obj.class_id or float("inf"))
    return sorted(first_id, key=lambda name: (first_id[name], name))


def _label_index(obj: _Object, record: _Record, names: list[str], label_map: dict[int, str] | None) -> int:
    name = label_map.get(obj.class_id) if label_map is not None and obj.class_id is not None else obj.text
    if name not in names:
        shown = f"class id {obj.class_id}" if obj.class_id is not None and label_map is not None else f"'{name}'"
        raise OtxliteError(f"{record.where}: an object has {shown}, which the label map does not declare "
                           f"(declared: {', '.join(names)}). Fix the label map or the record.")
    return names.index(name)


def import_tf_object_detection(root: Path) -> Any:
    """Read a folder of TensorFlow Object Detection API TFRecords into a ``datumaro.Dataset`` (RLE masks)."""
    from datumaro.components.annotation import AnnotationType, Bbox, LabelCategories, RleMask
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    label_map_path = find_label_map(root)
    label_map = read_label_map(label_map_path) if label_map_path else None
    records = [record for path in record_files(root) for record in _read_record_file(path)]
    names = _label_names(records, label_map, root)
    items, seen = [], {}
    for record in records:
        key = (record.subset, record.item_id)
        if key in seen:
            raise OtxliteError(f"{record.where}: the image '{record.item_id}' is already in {seen[key]}. "
                               "Give each image one record.")
        seen[key] = record.where
        annotations = []
        for number, obj in enumerate(record.objects, start=1):
            common = dict(label=_label_index(obj, record, names, label_map), id=number, group=number,
                          attributes={"is_crowd": obj.crowd})
            annotations.append(RleMask(rle=obj.rle, **common) if obj.rle is not None else Bbox(*obj.box, **common))
        media = Image.from_file(str(record.image), **({"size": record.size} if record.size else {}))
        items.append(DatasetItem(id=record.item_id, subset=record.subset, media=media, annotations=annotations))
    return Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)})
