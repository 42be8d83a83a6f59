"""Dataset folders -> label schema + COCO files for MMDetection, written into the run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otxlite.core.console import err_console
from otxlite.data.convert import ConversionStats, items_to_coco, rescale_warning
from otxlite.data.formats import DataOptions, ImportedDataset, import_dataset
from otxlite.data.labels import check_known_labels
from otxlite.data.split import label_set, pick_validation_subset, split_train_val
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import write_json_atomic


@dataclass
class PreparedSubset:
    """One converted subset: its COCO file and what went into it."""

    name: str
    ann_file: Path
    stats: ConversionStats


POLYGON_MIN_SHRINK = 2  # keep polygons when some training image is over this many times the input's side


def keep_polygon_masks(ann_file: Path, input_size: tuple[int, int]) -> bool:
    """Whether training should keep the masks as polygons until the head draws them at the input size: every
    mask is a polygon (crowd regions aside: training ignores them) and some image is over ``POLYGON_MIN_SHRINK``
    times the input's side, where drawing full-size bitmaps only to shrink them dominates the loading. Smaller
    images keep the bitmap path (on the coins photo at 256 px one RTMDet-Ins run reached 0.585 mask mAP with
    bitmaps and 0.484 with polygons, same seed)."""
    coco = json.loads(Path(ann_file).read_text())
    if not all(isinstance(a.get("segmentation", []), list) for a in coco["annotations"] if not a.get("iscrowd")):
        return False
    largest = max((max(image["width"], image["height"]) for image in coco["images"]), default=0)
    return largest > POLYGON_MIN_SHRINK * max(input_size)


@dataclass
class PreparedData:
    """The datasets of a run, sharing one label schema."""

    labels: list[str]
    formats: dict[str, str]
    subsets: dict[str, PreparedSubset]
    split_note: str = ""


def _used_labels(dataset: ImportedDataset, items: list[Any]) -> list[str]:
    used = {label for item in items for label in label_set(item)}
    return [name for i, name in enumerate(dataset.labels) if i in used]


@dataclass
class ConvertedSubset:
    """A subset imported and converted to COCO in memory."""

    coco: dict[str, Any]
    stats: ConversionStats

    def write(self, out_dir: Path, name: str = "test") -> PreparedSubset:
        """Write the COCO file ``out_dir/<name>.json``."""
        return PreparedSubset(name, write_json_atomic(Path(out_dir) / f"{name}.json", self.coco, indent=None),
                              self.stats)


def _convert_subset(name: str, items: list[Any], dataset: ImportedDataset, labels: list[str],
                    skip_bad_images: bool) -> ConvertedSubset:
    coco, stats = items_to_coco(items, dataset.labels, labels, skip_bad_images)
    warning = rescale_warning(stats, name)
    if warning:
        err_console.print(warning, markup=False, soft_wrap=True)
    return ConvertedSubset(coco, stats)


@dataclass
class ConvertedData:
    """The datasets of a run, imported and converted to COCO in memory: nothing is written yet."""

    labels: list[str]
    formats: dict[str, str]
    subsets: dict[str, ConvertedSubset]
    split_note: str
    split: dict[str, Any] | None  # the seeded split's record (split.json), if one was made

    def write(self, out_dir: Path) -> PreparedData:
        """Write the COCO files (and ``split.json``) into ``out_dir``."""
        if self.split is not None:
            write_json_atomic(Path(out_dir) / "split.json", self.split)
        subsets = {name: subset.write(out_dir, name) for name, subset in self.subsets.items()}
        return PreparedData(labels=self.labels, formats=self.formats, subsets=subsets, split_note=self.split_note)


def convert_training_data(train_root: Path, val_root: Path | None, data_options: DataOptions = DataOptions(),
                          skip_bad_images: bool = False, seed: int = 0) -> ConvertedData:
    """Import train (and validation) data, fix the label schema, split if needed and convert to COCO, in memory
    (so a bad dataset is refused before a run folder is made).

    Without ``val_root``: a validation subset inside the train folder is used, else a seeded 80/20
    split is made (recorded in ``split.json`` when written).
    """
    train = import_dataset(train_root, data_options.format, "--train-data-roots", data_options.data_root)
    formats = {"train": train.format}
    split = None
    if val_root is not None:
        val = import_dataset(val_root, data_options.format, "--val-data-roots", data_options.data_root)
        formats["val"] = val.format
        train_items, val_items, note = train.items, val.items, f"validation data from {val_root}"
    else:
        val = train
        by_subset = pick_validation_subset(train.items)
        if by_subset:
            (train_items, val_items), note = by_subset, "validation subset of the train folder"
        else:
            train_items, val_items = split_train_val(train.items, seed=seed)
            note = f"seeded 80/20 split (seed {seed}), recorded in split.json"
            split = {"seed": seed, "train": [item.id for item in train_items], "val": [item.id for item in val_items]}
    if not train_items:
        raise OtxliteError(f"--train-data-roots {train_root}: no training images found.")
    labels = _used_labels(train, train_items) or list(train.labels)
    check_known_labels(_used_labels(val, val_items), labels, "validation data")
    subsets = {"train": _convert_subset("train", train_items, train, labels, skip_bad_images),
               "val": _convert_subset("val", val_items, val, labels, skip_bad_images)}
    return ConvertedData(labels=labels, formats=formats, subsets=subsets, split_note=note, split=split)


def prepare_training_data(train_root: Path, val_root: Path | None, out_dir: Path,
                          data_options: DataOptions = DataOptions(), skip_bad_images: bool = False,
                          seed: int = 0) -> PreparedData:
    """``convert_training_data``, then its COCO files (and ``split.json``) written into ``out_dir``."""
    return convert_training_data(train_root, val_root, data_options, skip_bad_images, seed).write(out_dir)


def convert_eval_data(test_root: Path, labels: list[str], data_options: DataOptions = DataOptions(),
                      option: str = "--test-data-roots") -> ConvertedSubset:
    """Import evaluation data for a model with ``labels`` and convert it, in memory (a bad dataset is refused before
    any heavy work or run folder)."""
    test = import_dataset(test_root, data_options.format, option, data_options.data_root)
    check_known_labels(_used_labels(test, test.items), labels, f"data in {test_root}")
    return _convert_subset("test", test.items, test, labels, skip_bad_images=False)
