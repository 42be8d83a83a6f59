"""Ultralytics YOLO segmentation -> a Datumaro dataset (Datumaro 1.13 reads YOLO boxes only).

Layout (https://docs.ultralytics.com/datasets/segment/)::

    data.yaml            path: .   train: images/train   val: images/val   names: {0: disc, 1: star}
    images/train/a.jpg   labels/train/a.txt    one object per line: CLASS x1 y1 x2 y2 ... (normalized)

A split entry may be a folder of images, a ``.txt`` list of image paths, or a list of either. Each
image's label file is found as Ultralytics does: the last ``images`` folder of its path becomes
``labels`` and the suffix ``.txt``; an image without one is a negative. Lines with five numbers are
detection boxes, which the converter skips with a count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otxlite.core.images import read_image_size
from otxlite.core.errors import OtxliteError

SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".jpe", ".jfif"}


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def find_config(root: Path) -> Path | None:
    """The dataset YAML in ``root`` (a mapping with ``names``), preferring ``data.yaml``."""
    for path in sorted(Path(root).glob("*.y*ml"), key=lambda p: (p.stem not in ("data", "dataset"), p.name)):
        config = _read_yaml(path)
        if isinstance(config, dict) and "names" in config:
            return path
    return None


def is_yolo_segmentation(root: Path) -> bool:
    """Whether ``root`` looks like an Ultralytics YOLO dataset: a YAML with ``names`` and a ``labels`` folder."""
    root = Path(root)
    has_labels = (root / "labels").is_dir() or any(p.is_dir() for p in root.glob("*/labels"))
    return has_labels and find_config(root) is not None


def _label_names(config: dict[str, Any], path: Path) -> dict[int, str]:
    names = config["names"]
    try:
        pairs = names.items() if isinstance(names, dict) else enumerate(names)
        return {int(key): str(value) for key, value in pairs}
    except (TypeError, ValueError) as err:
        raise OtxliteError(f"{path}: 'names' must be a list of class names or a mapping id -> name.") from err


def _images_of(entry: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # A .txt list of image paths; relative ones (Ultralytics writes "./images/...") start at the list's folder.
    return [entry.parent / line.strip() for line in entry.read_text(encoding="utf-8").splitlines() if line.strip()]


def _split_images(root: Path, config: dict[str, Any], path: Path) -> dict[str, list[Path]]:
    """Images of each split named in the YAML (or found under ``images/<split>``)."""
    base = root
    if isinstance(config.get("path"), str):
        declared = Path(config["path"])
        declared = declared if declared.is_absolute() else root / declared
        base = declared if declared.is_dir() else root  # a dataset moved since the YAML was written
    splits: dict[str, list[Path]] = {}
    for key, subset in SPLITS.items():
        entries = config.get(key)
        for entry in entries if isinstance(entries, list) else [entries] if entries else []:
            relative = Path(*[part for part in Path(str(entry)).parts if part != ".."])  # Roboflow's "../train/images"
            found = next((p for p in (base / str(entry), root / str(entry), root / relative) if p.exists()), None)
            if found is None:
                raise OtxliteError(f"{path}: the {key} entry '{entry}' is neither a folder nor a file under {base}.")
            splits.setdefault(subset, []).extend(_images_of(found))
    if not splits:
        for folder in sorted((root / "images").glob("*")) if (root / "images").is_dir() else []:
            if folder.is_dir():
                splits.setdefault(SPLITS.get(folder.name, folder.name), []).extend(_images_of(folder))
    return splits


def label_file_of(image: Path) -> Path:
    """The label file Ultralytics pairs with ``image``: ``.../images/x.jpg`` -> ``.../labels/x.txt``."""
    parts = list(image.parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def _parse_labels(label_file: Path, size: tuple[int, int], label_index: dict[int, int]) -> list[Any]:
    from datumaro.components.annotation import Bbox, Polygon

    height, width = size
    annotations: list[Any] = []
    for number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_file}, line {number}"
        try:
            class_id, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError as err:
            raise OtxliteError(f"{where}: expected 'CLASS x1 y1 x2 y2 ...' (numbers), got '{line.strip()}'.") from err
        if class_id not in label_index:
            raise OtxliteError(f"{where}: class id {class_id} is not declared in the dataset YAML's 'names'.")
        group = len(annotations) + 1
        if len(values) == 4:
            cx, cy, w, h = values
            annotations.append(Bbox((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height,
                                    label=label_index[class_id], id=group, group=group))
        elif len(values) >= 6 and len(values) % 2 == 0:
            points = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
            annotations.append(Polygon(points, label=label_index[class_id], id=group, group=group))
        else:
            raise OtxliteError(f"{where}: a polygon needs a class id and at least three normalized x y pairs.")
    return annotations


def import_yolo_segmentation(root: Path) -> Any:
    """Read an Ultralytics YOLO (segmentation) dataset into a ``datumaro.Dataset`` (polygons in pixels)."""
    from datumaro.components.annotation import AnnotationType, LabelCategories
    from datumaro.components.dataset import Dataset
    from datumaro.components.dataset_base import DatasetItem
    from datumaro.components.media import Image

    root = Path(root)
    config_path = find_config(root)
    if config_path is None:
        raise OtxliteError(f"{root}: no dataset YAML with 'names' (e.g. data.yaml) was found.")
    config = _read_yaml(config_path)
    names = _label_names(config, config_path)
    label_index = {class_id: i for i, class_id in enumerate(sorted(names))}
    items = []
    for subset, images in _split_images(root, config, config_path).items():
        for image in images:
            size = read_image_size(str(image))
            label_file = label_file_of(image)
            # Without a readable image there is no size to scale by: the converter reports the image by name.
            annotations = _parse_labels(label_file, size, label_index) if size and label_file.is_file() else []
            item_id = image.relative_to(root).with_suffix("").as_posix() if image.is_relative_to(root) else image.stem
            media = Image.from_file(str(image), size=size) if size else Image.from_file(str(image))
            items.append(DatasetItem(id=item_id, subset=subset, media=media, annotations=annotations))
    categories = LabelCategories.from_iterable([names[class_id] for class_id in sorted(names)])
    return Dataset.from_iterable(items, categories={AnnotationType.label: categories})
