"""Find and import a dataset folder with Datumaro, turning every failure into a clear error."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from otxlite.core.errors import OtxliteError

# otxlite's names for the instance-segmentation formats it accepts -> the importer that reads them:
# a Datumaro importer name, or otxlite's own module where Datumaro lacks the format.
FORMATS: dict[str, str] = {
    "coco": "coco_instances",
    "voc": "voc_instance_segmentation",
    "cvat": "cvat",
    "labelme": "otxlite.data.labelme",
    "label_studio": "otxlite.data.label_studio",
    "datumaro": "datumaro",
    # Datumaro 1.13's YOLO reads boxes only, its Cityscapes is semantic only, its label_me is MIT LabelMe's XML
    # (not labelme's JSON), it has no AzureML JSONL, and its tf_detection_api needs TensorFlow.
    "cityscapes": "otxlite.data.cityscapes",
    "yolo": "otxlite.data.yolo_seg",
    "azureml": "otxlite.data.azureml",
    "tfrecord": "otxlite.data.tf_object_detection",
}
DATUMARO_TO_FORMAT = {v: k for k, v in FORMATS.items() if not v.startswith("otxlite.")}
# Datumaro detects some formats under a more general name (a VOC folder as voc, voc_detection, ...).
DATUMARO_TO_FORMAT.update({"coco": "coco", "voc": "voc", "mmdet_coco": "coco", "roboflow_coco": "coco"})
# Where the annotation files of a Datumaro-read format lie, to name the broken one when an import fails.
ANNOTATION_FILES = {"coco": "annotations/*.json", "datumaro": "annotations/*.json"}


def _own_importers() -> dict[str, tuple[Callable[[Path], bool], Callable[[Path], Any]]]:
    """otxlite's importers: format name -> (detect(root), import(root) -> datumaro.Dataset)."""
    from otxlite.data.azureml import import_azureml_jsonl, is_azureml_jsonl
    from otxlite.data.cityscapes import import_cityscapes_instances, is_cityscapes_instances
    from otxlite.data.label_studio import import_label_studio, is_label_studio
    from otxlite.data.labelme import import_labelme, is_labelme
    from otxlite.data.tf_object_detection import import_tf_object_detection, is_tf_object_detection
    from otxlite.data.yolo_seg import import_yolo_segmentation, is_yolo_segmentation

    return {
        "tfrecord": (is_tf_object_detection, import_tf_object_detection),
        "azureml": (is_azureml_jsonl, import_azureml_jsonl),
        "yolo": (is_yolo_segmentation, import_yolo_segmentation),
        "cityscapes": (is_cityscapes_instances, import_cityscapes_instances),
        "labelme": (is_labelme, import_labelme),
        "label_studio": (is_label_studio, import_label_studio),
    }


def check_folder(root: Path, option: str) -> Path:
    """Fail clearly if ``root`` is not an existing, non-empty folder."""
    root = Path(root)
    if not root.exists():
        raise OtxliteError(f"{option} {root}: the folder does not exist. Check the path.")
    if not root.is_dir():
        raise OtxliteError(f"{option} {root}: this is a file; give the dataset's folder instead.")
    if not any(root.iterdir()):
        raise OtxliteError(f"{option} {root}: the folder is empty. Put a dataset in it ({', '.join(FORMATS)}).")
    return root


def detect_format(root: Path) -> str:
    """Return otxlite's name of the dataset format found in ``root``."""
    for name, (detect, _) in _own_importers().items():
        if detect(root):
            return name
    import datumaro as dm

    found = dm.Environment().detect_dataset(str(root))
    known = [DATUMARO_TO_FORMAT[name] for name in found if name in DATUMARO_TO_FORMAT]
    if not known:
        seen = f" (Datumaro recognised {', '.join(found)}, which otxlite does not train on)" if found else ""
        broken = _find_broken_json(root)
        hint = f" A JSON file does not parse: {broken}." if broken else ""
        raise OtxliteError(
            f"Cannot tell the dataset format of {root}{seen}. Tried: {', '.join(FORMATS)}.{hint} "
            "Check the folder layout against the README's dataset section, or force one with --data-format NAME."
        )
    return known[0]


def _find_broken_json(root: Path) -> str | None:
    """Describe the first JSON file under ``root`` that does not parse (file, line, column)."""
    for path in sorted(root.rglob("*.json")):
        try:
            json.loads(path.read_text(errors="replace"))
        except json.JSONDecodeError as err:
            return f"{path} (line {err.lineno}, column {err.colno}: {err.msg})"
    return None


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from, outermost first."""
    chain = [err]
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
        chain.append(err)
    return chain


def _undeclared_label_message(chain: list[BaseException], root: Path, option: str) -> str | None:
    """Describe Datumaro's UndeclaredLabelError (with the item it came from), if that is the cause."""
    from datumaro.components.errors import ItemImportError, UndeclaredLabelError

    if not isinstance(chain[-1], UndeclaredLabelError):
        return None
    item = next((f" of item {e.item_id[0]} ({e.item_id[1]})" for e in chain if isinstance(e, ItemImportError)), "")
    return (f"{option} {root}: an annotation{item} uses label/category id {chain[-1].id}, which the dataset does "
            "not declare. Add it to the categories (label list) of the annotation file, or fix the annotation.")


def _broken_annotation_file(root: Path, fmt: str) -> str | None:
    """Import each annotation file of ``root`` alone; describe the first that fails (file, item, cause)."""
    import datumaro as dm
    from datumaro.components.errors import ItemImportError

    for path in sorted(root.glob(ANNOTATION_FILES[fmt])) if fmt in ANNOTATION_FILES else []:
        try:
            list(dm.Dataset.import_from(str(path), FORMATS[fmt]))
        except Exception as err:  # noqa: BLE001 - any failure of this one file is what we describe
            chain = _causes(err)
            item = next((e.item_id for e in chain if isinstance(e, ItemImportError)), None)
            where = f" (item/annotation id {item[0]})" if item and item[0] is not None else ""
            cause = chain[-1]
            what = (f"the key or value {cause} is missing or unknown" if isinstance(cause, KeyError)
                    else f"{type(cause).__name__}: {cause}")
            return f"{path}{where}: {what}"
    return None


# Formats whose annotation files point at images that may lie elsewhere (--data-root).
IMAGE_ROOT_FORMATS = ("label_studio", "azureml")


@dataclass(frozen=True)
class DataOptions:
    """How a run reads its dataset folders: a forced format (else detected) and where the images of formats that
    reference them by URL lie (``--data-root``; else the annotation file's folder)."""

    format: str | None = None
    data_root: Path | None = None


@dataclass
class ImportedDataset:
    """Datumaro items (annotations in memory, images not read) with their label names."""

    root: Path
    format: str
    labels: list[str]
    items: list[Any]


def import_dataset(root: Path, data_format: str | None, option: str, data_root: Path | None = None) -> ImportedDataset:
    """Import ``root`` (``data_root``: where a Label Studio or AzureML dataset's images lie); ``option`` names the CLI
    option in error messages."""
    root = check_folder(root, option)
    if data_format is not None and data_format not in FORMATS:
        raise OtxliteError(f"--data-format {data_format}: unknown format. Choose one of {', '.join(FORMATS)}.")
    fmt = data_format or detect_format(root)
    if data_root is not None and fmt not in IMAGE_ROOT_FORMATS:
        raise OtxliteError(f"--data-root {data_root}: a {fmt} dataset finds its images from its own folder "
                           f"({root}); --data-root is for {' and '.join(IMAGE_ROOT_FORMATS)} exports. Leave it out.")
    if data_root is not None and not Path(data_root).is_dir():
        raise OtxliteError(f"--data-root {data_root}: the folder does not exist. Point it at the folder that holds "
                           "the images the annotation file references.")
    import datumaro as dm
    from datumaro.components.annotation import AnnotationType

    own = _own_importers()
    loader: Callable[[], Any]
    if fmt in IMAGE_ROOT_FORMATS:
        loader = lambda: own[fmt][1](root, data_root)  # noqa: E731
    elif fmt in own:
        loader = lambda: own[fmt][1](root)  # noqa: E731
    else:
        loader = lambda: dm.Dataset.import_from(str(root), FORMATS[fmt])  # noqa: E731

    logging.getLogger("root").setLevel(logging.ERROR)  # Datumaro logs per-item warnings on the root logger
    try:
        dataset = loader()
        items = list(dataset)
        label_cats = dataset.categories().get(AnnotationType.label)
    except OtxliteError:
        raise
    except Exception as err:  # Datumaro wraps parser errors in its own types
        chain = _causes(err)
        cause = chain[-1]
        broken = _find_broken_json(root) if isinstance(cause, ValueError) else None
        if broken:
            raise OtxliteError(f"{option} {root}: a JSON file does not parse: {broken}. Fix or re-export it.") from err
        undeclared = _undeclared_label_message(chain, root, option)
        if undeclared:
            raise OtxliteError(undeclared) from err
        broken = _broken_annotation_file(root, fmt)
        if broken:
            raise OtxliteError(f"{option} {root}: the annotation file {broken}. Fix the file, or export the "
                               f"dataset again in the '{fmt}' format.") from err
        raise OtxliteError(
            f"{option} {root}: Datumaro could not read it as '{fmt}': {type(cause).__name__}: {cause}. "
            "Check the annotation files, or force another format with --data-format."
        ) from err
    labels = [category.name for category in label_cats] if label_cats else []
    return ImportedDataset(root=root, format=fmt, labels=labels, items=items)
