"""AzureML AutoML instance-segmentation JSONL -> a Datumaro dataset (Datumaro has no importer for it).

One JSON object per line and image (https://learn.microsoft.com/azure/machine-learning/reference-automl-images-schema)::

    {"image_url": "azureml://.../paths/images/a.jpg", "image_details": {"format": "jpg", "width": 499, "height": 666},
     "label": [{"label": "can", "isCrowd": 0, "polygon": [[0.577, 0.689, 0.567, 0.689, ...]]}]}

Polygon coordinates are normalized to [0, 1]; one list per part of the object. Images are looked
up relative to the JSONL file's folder. The subset comes from the file name (``train.jsonl``,
``val.jsonl``...). Label ids follow the sorted label names, since the format declares no label list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from otxlite.core.images import read_image_size
from otxlite.data.split import subset_from_file_name
from otxlite.core.errors import OtxliteError

REQUIRED_KEYS = ("image_url", "label")
_DATASTORE_PREFIX = re.compile(r"^(?:azureml://.*?/paths/|amldatastore://)", re.IGNORECASE)
_COORD_TOLERANCE = 0.01  # normalized coordinates slightly outside [0, 1] come from rounding


def _first_object(path: Path) -> Any:
    """The first non-empty line of ``path`` parsed as JSON, or None if it is not JSON."""
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    return json.loads(line)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def is_azureml_jsonl(root: Path) -> bool:
    """Whether ``root`` holds ``*.jsonl`` files of the AzureML AutoML image schema."""
    for path in sorted(Path(root).glob("*.jsonl")):
        first = _first_object(path)
        if isinstance(first, dict) and all(key in first for key in REQUIRED_KEYS):
            return True
    return False


def resolve_image(url: str, bases: list[Path]) -> Path:
    """Local file of an ``image_url``, under the first of ``bases`` that has it (``--data-root``, then the JSONL
    file's folder).

    Tries the URL as given, then the path after the datastore prefix (``azureml://.../paths/``,
    ``AmlDatastore://``) and its shorter tails, then ``images/<name>``, then the bare file name.
    Returns the first that exists, else the path after the prefix under the last base (for the error message).
    """
    url = re.sub(r"^file://", "", url.strip())
    rest = Path(_DATASTORE_PREFIX.sub("", url))
    for base in bases:
        tails = [base / Path(*rest.parts[i:]) for i in range(len(rest.parts) - 1)]
        for candidate in [base / url, *tails, base / "images" / rest.name, base / rest.name]:
            if candidate.is_file():
                return candidate
    return bases[-1] / rest


def _size_of(details: Any) -> tuple[int, int] | None:
    """(height, width) from ``image_details`` (ints or strings like ``"400px"``), if both are given."""
    if not isinstance(details, dict):
        return None
    try:
        width, height = (int(float(str(details[key]).lower().removesuffix("px"))) for key in ("width", "height"))
    except (KeyError, ValueError):
        return None
    return (height, width) if width > 0 and height > 0 else None


def _is_crowd(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


class _Line:
    """One JSONL line being converted; ``fail`` names the file and line in the error."""

    def __init__(self, path: Path, number: int) -> None:
        self.path, self.number = path, number

    def fail(self, problem: str) -> OtxliteError:
        return OtxliteError(
            f"{self.path}, line {self.number}: {problem}. Each line must be one JSON object of the AzureML AutoML "
            'instance-segmentation schema: {"image_url": ..., "label": [{"label": NAME, "isCrowd": 0, '
            '"polygon": [[x1, y1, x2, y2, ...]]}]} with coordinates normalized to [0, 1].'
        )

    def parse(self, text: str) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise OtxliteError(
                f"{self.path}, line {self.number}, column {err.colno}: the JSON does not parse ({err.msg}). "
                "Fix or re-export the file."
            ) from err
        if not isinstance(record, dict):
            raise self.fail(f"expected a JSON object, found {type(record).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise self.fail(f"the key {' and '.join(repr(key) for key in missing)} is missing")
        if not isinstance(record["image_url"], str) or not record["image_url"].strip():
            raise self.fail("'image_url' must be a non-empty string")
        if not isinstance(record["label"], list):
            raise self.fail("'label' must be a list of objects (a single class name is image classification)")
        return record

    def polygons(self, obj: dict[str, Any], index: int, height: int, width: int) -> list[list[float]]:
        """The parts of object ``index`` in pixels."""
        parts = obj["polygon"]
        if not isinstance(parts, list) or (parts and not isinstance(parts[0], list)):
            raise self.fail(f"label {index}: 'polygon' must be a list of lists [[x1, y1, x2, y2, ...], ...]")
        pixels = []
        for part in parts:
            if len(part) % 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part):
                raise self.fail(f"label {index}: a polygon needs an even number of numbers (x, y pairs)")
            if any(v < -_COORD_TOLERANCE or v > 1 + _COORD_TOLERANCE for v in part):
                raise self.fail(f"label {index}: polygon coordinates must be normalized to [0, 1]")
            pixels.append([float(v) * (width if i % 2 == 0 else height) for i, v in enumerate(part)])
        return pixels


def _annotations(line: _Line, record: dict[str, Any], size: tuple[int, int] | None,
                 label_ids: dict[str, int]) -> list[Any]:
    from datumaro.components.annotation import Bbox, Polygon

    annotations: list[Any] = []
    for index, obj in enumerate(record["label"]):
        if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
            raise line.fail(f"label {index}: each entry must be an object with a string 'label'")
        if "polygon" not in obj and not all(k in obj for k in ("topX", "topY", "bottomX", "bottomY")):
            raise line.fail(f"label {index}: the key 'polygon' is missing")
        if size is None:  # missing or unreadable image: the converter reports it by name
            continue
        height, width = size
        label = label_ids[obj["label"]]
        attributes = {"is_crowd": _is_crowd(obj.get("isCrowd", 0))}
        group = index + 1  # parts of one object share a group; 0 would mean "no group"
        if "polygon" in obj:
            for part in line.polygons(obj, index, height, width):
                annotations.append(Polygon(part, label=label, group=group, id=group, attributes=dict(attributes)))
        else:  # an object-detection line: box only, which the converter skips with a count
            try:
                x0, y0, x1, y1 = (float(obj[k]) for k in ("topX", "topY", "bottomX", "bottomY"))
            except (TypeError, ValueError) as err:
                raise line.fail(f"label {index}: box coordinates must be numbers") from err
            annotations.append(Bbox(x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height,
                                    label=label, group=group, id=group, attributes=attributes))
    return annotations


def import_azureml_jsonl(root: Path, data_root: Path | None = None) -> Any:
    """Read every ``*.jsonl`` file in ``root`` into a ``datumaro.Dataset`` (polygons in pixels); images are looked
    up under ``data_root`` first, then beside each file."""
    from datumaro.components.annotation import AnnotationType, LabelCategories
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    records: list[tuple[_Line, dict[str, Any]]] = []
    for path in sorted(root.glob("*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, text in enumerate(lines, start=1):
                if text.strip():
                    line = _Line(path, number)
                    records.append((line, line.parse(text)))
    if not records:
        raise OtxliteError(f"{root}: the .jsonl files hold no lines. Put one JSON object per image in them.")
    names = sorted({obj["label"] for _, record in records for obj in record["label"]
                    if isinstance(obj, dict) and isinstance(obj.get("label"), str)})
    label_ids = {name: i for i, name in enumerate(names)}
    items, seen = [], {}
    for line, record in records:
        image_path = resolve_image(record["image_url"], [*([Path(data_root)] if data_root else []), line.path.parent])
        subset = subset_from_file_name(line.path)
        item_id = image_path.relative_to(root).with_suffix("").as_posix() if image_path.is_relative_to(root) \
            else image_path.stem
        if (subset, item_id) in seen:
            raise line.fail(f"the image {image_path} is already listed on line {seen[subset, item_id]}")
        seen[subset, item_id] = line.number
        size = read_image_size(str(image_path)) or _size_of(record.get("image_details"))
        annotations = _annotations(line, record, size, label_ids)
        media = Image.from_file(str(image_path), size=size) if size else Image.from_file(str(image_path))
        items.append(DatasetItem(id=item_id, subset=subset, media=media, annotations=annotations))
    return Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)})
