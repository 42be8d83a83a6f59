"""Label Studio's "JSON" export -> a Datumaro dataset.

The export is one JSON list of tasks, each with the image reference in ``data`` and the annotators' work::

    [{"id": 7, "data": {"image": "/data/upload/1/3f9a1c2e-photo.jpg"},
      "annotations": [{"was_cancelled": false, "result": [
          {"type": "polygonlabels", "original_width": 640, "original_height": 480, "image_rotation": 0,
           "value": {"points": [[12.5, 20.0], ...], "polygonlabels": ["cat"]}},
          {"type": "brushlabels", "original_width": 640, "original_height": 480,
           "value": {"format": "rle", "rle": [0, 3, ...], "brushlabels": ["dog"]}},
          {"type": "rectanglelabels", ...}]}]}]

Polygon points are percentages of ``original_width`` x ``original_height`` (the size Label Studio showed, EXIF
orientation applied); brush strokes are Label Studio's own RLE, decoded by its converter package
(``pip install 'otxlite[labelstudio]'``); rectangles are boxes, skipped and counted, as are key points and
ellipses. Each region is one instance. The first annotation of a task that was not cancelled is used; tasks
nobody annotated are left out. Image references (``/data/upload/<project>/<file>``, ``/data/local-files/?d=<path>``,
URLs) are looked up under ``--data-root`` (Label Studio's media or local-files folder) and the export's folder:
the path as given, its shorter tails, then the bare file name with and without the 8-character prefix that
Label Studio adds to uploaded files. The subset comes from the file name (``train.json``, ``val.json``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from otxlite.core.errors import OtxliteError
from otxlite.data.split import subset_from_file_name

AREA_TYPES = {"polygonlabels": "points", "brushlabels": "rle"}
SKIPPED_TYPES = ("keypointlabels", "ellipselabels", "polylinelabels")  # counted as other shapes
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
SNIFF_BYTES = 4096  # of a JSON file's head, where the first task's first key is
TASK_KEYS = (b'"annotations"', b'"data"', b'"predictions"', b'"id"')


def _is_task_list(data: Any) -> bool:
    return (isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "data" in data[0]
            and any(key in data[0] for key in ("annotations", "predictions")))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _starts_like_tasks(path: Path) -> bool:
    """Whether a JSON file's head is a list of objects with a task's keys, so that detection never parses a large
    file of another format (Label Studio writes a task's ``annotations`` before its ``data``)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except OSError:
        return False
    return bool(re.match(rb"\s*\[\s*\{", head)) and any(key in head for key in TASK_KEYS)


def _export_files(root: Path) -> list[tuple[Path, list[dict[str, Any]]]]:
    return [(path, data) for path in sorted(Path(root).glob("*.json"))
            if _starts_like_tasks(path) and _is_task_list(data := _read(path))]


def is_label_studio(root: Path) -> bool:
    """Whether ``root`` holds a Label Studio JSON export, told from the files' heads (the import parses them)."""
    return any(_starts_like_tasks(path) for path in sorted(Path(root).glob("*.json")))


def _image_reference(task: dict[str, Any]) -> str | None:
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    value = data.get("image", next((v for v in data.values() if isinstance(v, str)), None))
    return value if isinstance(value, str) and value else None


def resolve_image(reference: str, bases: list[Path]) -> Path | None:
    """The local file of a Label Studio image reference under one of ``bases``, or None."""
    reference = unquote(reference.strip())
    if "?d=" in reference:  # local storage: /data/local-files/?d=relative/path
        relative = PurePosixPath(reference.split("?d=", 1)[1])
    else:
        relative = PurePosixPath(urlparse(reference).path if "://" in reference else reference)
    if relative.is_absolute() and Path(relative).is_file():
        return Path(relative)
    parts = [part for part in relative.parts if part not in ("/", "..", ".")]
    names = [relative.name, _UPLOAD_PREFIX.sub("", relative.name)]
    for base in bases:
        candidates = [base.joinpath(*parts[i:]) for i in range(len(parts))]
        candidates += [base / name for name in names] + [base / "images" / name for name in names]
        found = next((path for path in candidates if path.is_file()), None)
        if found:
            return found
    return None


def _chosen_annotation(task: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The result list of the first annotation that was not cancelled, or None if nobody annotated the task."""
    for annotation in task.get("annotations") or []:
        if isinstance(annotation, dict) and not annotation.get("was_cancelled") and "result" in annotation:
            return annotation["result"] if isinstance(annotation["result"], list) else None
    return None


def _decode_brush(rle: list[int], height: int, width: int) -> np.ndarray:
    """A brush stroke's mask with Label Studio's own decoder (RGBA, the alpha channel is the stroke)."""
    try:
        from label_studio_sdk.converter.brush import decode_rle
    except ImportError as err:
        raise OtxliteError(
            "This Label Studio export has brush (brushlabels) masks, which are decoded with Label Studio's own "
            "converter: install it with pip install 'otxlite[labelstudio]' (label-studio-sdk) and run again."
        ) from err
    values = decode_rle(rle)
    if values.size != height * width * 4:
        raise ValueError(f"the RLE holds {values.size} values, not {height}x{width}x4")
    return values.reshape(height, width, 4)[:, :, 3] > 0


class _Task:
    """One task being converted; ``fail`` names the export file and task in the error."""

    def __init__(self, path: Path, index: int, task: dict[str, Any]) -> None:
        self.path, self.index, self.task = path, index, task

    def fail(self, problem: str) -> OtxliteError:
        return OtxliteError(f"{self.path}, task {self.task.get('id', self.index)}: {problem}. Export the project "
                            "again from Label Studio in the JSON format.")

    def annotations(self, results: list[dict[str, Any]], label_ids: dict[str, int]) -> tuple[list[Any], Any]:
        """Datumaro annotations of the results, and the (height, width) they were drawn on."""
        from datumaro.components.annotation import Bbox, Mask, Points, Polygon

        annotations: list[Any] = []
        size = None
        for number, result in enumerate(results, start=1):
            kind = result.get("type")
            value = result.get("value") or {}
            if kind not in AREA_TYPES and kind not in SKIPPED_TYPES and kind != "rectanglelabels":
                continue  # not a region (choices, text areas...)
            try:
                height, width = int(result["original_height"]), int(result["original_width"])
            except (KeyError, TypeError, ValueError) as err:
                raise self.fail(f"result {number} ({kind}) has no original_width/original_height") from err
            if result.get("image_rotation"):
                raise self.fail(f"result {number} was drawn on the image rotated by {result['image_rotation']} "
                                "degrees, which otxlite cannot place. Annotate it unrotated")
            size = (height, width)
            if kind in SKIPPED_TYPES:  # the converter counts them as skipped shapes
                annotations.append(Points([float(value.get("x", 0)) / 100 * width,
                                           float(value.get("y", 0)) / 100 * height]))
                continue
            label = label_ids[value[kind][0]]
            if kind == "rectanglelabels":
                x, y, w, h = (float(value[k]) / 100 for k in ("x", "y", "width", "height"))
                annotations.append(Bbox(x * width, y * height, w * width, h * height, label=label, id=number))
            elif kind == "polygonlabels":
                points = np.asarray(value.get("points"), dtype=np.float64).reshape(-1, 2) / 100 * (width, height)
                annotations.append(Polygon(points.ravel().tolist(), label=label, id=number, group=number))
            else:
                try:
                    mask = _decode_brush(value["rle"], height, width)
                except (KeyError, TypeError, ValueError, IndexError) as err:
                    raise self.fail(f"result {number} (brushlabels) is no Label Studio RLE ({err})") from err
                annotations.append(Mask(image=mask, label=label, id=number, group=number))
        return annotations, size


def _label_names(tasks: list[tuple[Path, int, dict[str, Any]]]) -> list[str]:
    names = set()
    for _, _, task in tasks:
        for result in _chosen_annotation(task) or []:
            kind = result.get("type") if isinstance(result, dict) else None
            if kind in AREA_TYPES or kind == "rectanglelabels":
                labels = (result.get("value") or {}).get(kind)
                if isinstance(labels, list) and labels and isinstance(labels[0], str):
                    names.add(labels[0])
    return sorted(names)


def import_label_studio(root: Path, data_root: Path | None = None) -> Any:
    """Read the Label Studio JSON export(s) in ``root`` into a ``datumaro.Dataset``."""
    from datumaro.components.annotation import AnnotationType, LabelCategories
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    bases = [Path(data_root)] if data_root else []
    bases.append(root)
    tasks = [(path, index, task) for path, data in _export_files(root) for index, task in enumerate(data)
             if isinstance(task, dict)]
    names = _label_names(tasks)
    label_ids = {name: i for i, name in enumerate(names)}
    items, seen = [], set()
    for path, index, task in tasks:
        results = _chosen_annotation(task)
        if results is None:
            continue
        entry = _Task(path, index, task)
        reference = _image_reference(task)
        if reference is None:
            raise entry.fail("its 'data' names no image")
        image = resolve_image(reference, bases)
        if image is None:
            where = " and ".join(str(base) for base in bases)
            raise OtxliteError(
                f"{path}, task {task.get('id', index)}: the image {reference} was not found under {where} (tried "
                "the path, its shorter tails and the file name). Copy Label Studio's media folder (its upload/ or "
                "local-files folder) there, or point --data-root at it."
            )
        annotations, size = entry.annotations([r for r in results if isinstance(r, dict)], label_ids)
        item_id = f"{task.get('id', index)}_{image.stem}"
        if item_id in seen:
            raise entry.fail("the task id appears twice")
        seen.add(item_id)
        media = Image.from_file(str(image), size=size) if size else Image.from_file(str(image))
        items.append(DatasetItem(id=item_id, subset=subset_from_file_name(path), media=media,
                                 annotations=annotations))
    if not items:
        raise OtxliteError(f"{root}: the Label Studio export holds no annotated task. Annotate some images and "
                           "export again (JSON format).")
    return Dataset.from_iterable(items, categories={AnnotationType.label: LabelCategories.from_iterable(names)})
