"""Test helpers: the sample COCO dataset written in every format otxlite imports.

Datumaro's exporters write COCO, Pascal VOC, CVAT and Datumaro's own format; labelme's own code
(``LabelFile`` and the app's shape serializer) writes labelme files. Datumaro 1.13 cannot write the
other formats as instance segmentation (its YOLO exporters write boxes only, its Cityscapes exporter
writes class ids without instance ids, it has no AzureML JSONL), so small writers here do it, each
the inverse of otxlite's importer and following the format's documentation.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from otxlite.data.prepare import PreparedData


def load_coco(root: Path) -> Any:
    """The sample dataset as a Datumaro dataset."""
    import datumaro as dm

    return dm.Dataset.import_from(str(root), "coco_instances")


def _copy(dataset: Any) -> Any:
    import datumaro as dm

    return dm.Dataset.from_extractors(dataset)


def drop_crowd(dataset: Any) -> Any:
    """A copy of ``dataset`` without crowd regions, for formats that have no way to mark them."""
    copy = _copy(dataset)
    for item in list(copy):
        kept = [ann for ann in item.annotations if not ann.attributes.get("is_crowd", False)]
        copy.put(item.wrap(annotations=kept))
    return copy


def export_datumaro(dataset: Any, out: Path, fmt: str) -> Path:
    """Write ``dataset`` to ``out`` with Datumaro's exporter ``fmt``, prepared as that format needs."""
    from datumaro.components.annotation import AnnotationType

    dataset = _copy(dataset)
    if fmt == "voc_instance_segmentation":
        # VOC stores one mask per object (SegmentationObject PNG): polygons and parts become masks.
        # It has no crowd flag: Datumaro would write the crowd region as an ordinary object.
        dataset = drop_crowd(dataset)
        dataset.transform("merge_instance_segments", include_polygons=True)
    elif fmt == "cvat":
        # CVAT keeps only declared attributes; annotators mark crowds with an "is_crowd" attribute.
        for category in dataset.categories()[AnnotationType.label]:
            category.attributes.add("is_crowd")
    dataset.export(str(out), fmt, save_media=True)
    return out


def _objects(item: Any) -> list[tuple[int, bool, list[np.ndarray], np.ndarray | None]]:
    """(label, is_crowd, polygon parts in pixels, mask or None) of each object of an item."""
    from datumaro.components.annotation import AnnotationType

    groups: dict[Any, dict[str, Any]] = {}
    for index, ann in enumerate(item.annotations):
        if ann.type not in (AnnotationType.polygon, AnnotationType.mask):
            continue
        key = ann.group or f"single-{index}"
        entry = groups.setdefault(key, {"label": ann.label, "crowd": False, "parts": [], "mask": None})
        entry["crowd"] |= bool(ann.attributes.get("is_crowd", False))
        if ann.type == AnnotationType.polygon:
            entry["parts"].append(np.asarray(ann.points, dtype=np.float64).reshape(-1, 2))
        else:
            entry["mask"] = ann.image.astype(bool) if entry["mask"] is None else entry["mask"] | ann.image.astype(bool)
    return [(g["label"], g["crowd"], g["parts"], g["mask"]) for g in groups.values()]


def _object_mask(parts: list[np.ndarray], mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """An object's mask; polygons rasterized as pycocotools (and so MMDetection) does."""
    from pycocotools import mask as mask_utils

    if mask is not None:
        return mask.astype(bool)
    rles = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in parts], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a mask (polygon formats cannot express holes)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3]


def _image_size(item: Any) -> tuple[int, int]:
    height, width = item.media.size
    return height, width


def _subset_name(item: Any) -> str:
    return item.subset or "train"


def _link_image(item: Any, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(Path(item.media.path).read_bytes())
    return target


def labelme_shape(label: str, shape_type: str, points: Any, group_id: int | None = None,
                  mask: np.ndarray | None = None) -> dict[str, Any]:
    """A shape as the labelme app saves it: its own ``Shape`` serialized by its own ``_shape_to_dict``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from labelme._shape import Shape
    from labelme.app import _shape_to_dict
    from PyQt5.QtCore import QPointF

    shape = Shape(label=label, shape_type=shape_type, group_id=group_id, mask=mask)
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        shape.add_point(QPointF(float(x), float(y)))
    return _shape_to_dict(shape)


def save_labelme(path: Path, shapes: list[dict[str, Any]], image: Path, size: tuple[int, int],
                 embed: bool = False) -> Path:
    """One labelme JSON file written by labelme's ``LabelFile`` (``imagePath`` relative to the JSON file)."""
    from labelme import LabelFile

    path.parent.mkdir(parents=True, exist_ok=True)
    data = LabelFile.load_image_file(str(image)) if embed else None
    LabelFile().save(str(path), shapes, os.path.relpath(image, path.parent), size[0], size[1], image_data=data)
    return path


def write_labelme(dataset: Any, out: Path) -> Path:
    """labelme files beside the images, one folder per subset: polygons (parts of one object share a
    ``group_id``), masks as ``mask`` shapes, crowd regions as labelme's ``__ignore__`` label."""
    from datumaro.components.annotation import AnnotationType

    names = [category.name for category in dataset.categories()[AnnotationType.label]]
    for item in dataset:
        image = _link_image(item, out / _subset_name(item) / Path(item.media.path).name)
        shapes = []
        for number, (label, crowd, parts, mask) in enumerate(_objects(item), start=1):
            name = "__ignore__" if crowd else names[label]
            if mask is not None:
                ys, xs = np.nonzero(mask)
                box = [[xs.min(), ys.min()], [xs.max(), ys.max()]]
                crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
                shapes.append(labelme_shape(name, "mask", box, None, crop))
            group = number if len(parts) > 1 else None
            shapes += [labelme_shape(name, "polygon", part, group) for part in parts]
        save_labelme(image.with_suffix(".json"), shapes, image, _image_size(item))
    return out


def write_yolo_segmentation(dataset: Any, out: Path) -> Path:
    """Ultralytics YOLO segmentation: ``data.yaml``, ``images/<split>/``, ``labels/<split>/*.txt``.

    One line per object: ``CLASS x1 y1 x2 y2 ...`` normalized. An object in several parts becomes one
    polygon through its parts (as Ultralytics' own COCO converter joins them). YOLO has no crowd
    flag: crowd regions are left out, as Datumaro's YOLO exporter does.
    """
    from datumaro.components.annotation import AnnotationType

    names = [category.name for category in dataset.categories()[AnnotationType.label]]
    splits = set()
    for item in dataset:
        split = _subset_name(item)
        splits.add(split)
        image = _link_image(item, out / "images" / split / Path(item.media.path).name)
        height, width = _image_size(item)
        lines = []
        for label, crowd, parts, mask in _objects(item):
            if crowd:
                continue
            parts = parts or _mask_polygons(mask)
            points = np.concatenate(parts) / [width, height]
            lines.append(" ".join([str(label)] + [f"{v:.6f}" for v in points.reshape(-1)]))
        label_file = out / "labels" / split / f"{image.stem}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(line + "\n" for line in lines))
    yaml_lines = ["path: ."] + [f"{split}: images/{split}" for split in sorted(splits)]
    yaml_lines += ["names:"] + [f"  {i}: {name}" for i, name in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(yaml_lines) + "\n")
    return out


def write_cityscapes_instances(dataset: Any, out: Path) -> Path:
    """Cityscapes instances: ``leftImg8bit/<split>/<city>/`` and ``gtFine/<split>/<city>/*_instanceIds.png``.

    Pixel value ``class_id * 1000 + k`` for object k, ``class_id`` for a crowd region; class ids from a
    Datumaro label map (``label_colors.txt``, background first).
    """
    from datumaro.components.annotation import AnnotationType

    names = [category.name for category in dataset.categories()[AnnotationType.label]]
    (out / "label_colors.txt").parent.mkdir(parents=True, exist_ok=True)
    colors = ["0 0 0 background"] + [f"{40 * (i + 1)} {255 - 40 * i} 128 {name}" for i, name in enumerate(names)]
    (out / "label_colors.txt").write_text("\n".join(colors) + "\n")
    for item in dataset:
        split, name = _subset_name(item), Path(item.id).name
        _link_image(item, out / "leftImg8bit" / split / "sample" / f"{name}_leftImg8bit.jpg")
        height, width = _image_size(item)
        ids = np.zeros((height, width), np.uint16)
        per_class: Counter = Counter()
        for label, crowd, parts, mask in _objects(item):
            class_id = label + 1  # after the background
            ids[_object_mask(parts, mask, height, width)] = class_id if crowd else class_id * 1000 + per_class[class_id]
            per_class[class_id] += 0 if crowd else 1
        gt = out / "gtFine" / split / "sample" / f"{name}_gtFine_instanceIds.png"
        gt.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(gt), ids)
    return out


def write_azureml_jsonl(dataset: Any, out: Path, image_url_prefix: str = "") -> Path:
    """AzureML AutoML instance segmentation: ``<split>.jsonl`` with normalized polygons, ``images/``."""
    from datumaro.components.annotation import AnnotationType

    names = [category.name for category in dataset.categories()[AnnotationType.label]]
    lines: dict[str, list[str]] = {}
    for item in dataset:
        image = _link_image(item, out / "images" / Path(item.media.path).name)
        height, width = _image_size(item)
        objects = []
        for label, crowd, parts, mask in _objects(item):
            parts = parts or _mask_polygons(mask)
            polygons = [[round(float(v), 5) for v in (part / [width, height]).reshape(-1)] for part in parts]
            objects.append({"label": names[label], "isCrowd": int(crowd), "polygon": polygons})
        record = {"image_url": f"{image_url_prefix}images/{image.name}",
                  "image_details": {"format": image.suffix[1:], "width": f"{width}px", "height": f"{height}px"},
                  "label": objects}
        lines.setdefault(_subset_name(item), []).append(json.dumps(record))
    for split, records in lines.items():
        (out / f"{split}.jsonl").write_text("\n".join(records) + "\n")
    return out


def _tf_example(item: Any, names: list[str], dense_masks: bool) -> bytes:
    """The ``tf.train.Example`` of one item, as the TF Object Detection API's create_coco_tf_record.py writes it."""
    from tfrecord_writer import encode_example

    height, width = _image_size(item)
    objects = _objects(item)
    masks = [_object_mask(parts, mask, height, width) for _, _, parts, mask in objects]
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append((xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height))
    boxes_array = np.asarray(boxes, np.float32).reshape(-1, 4)
    features: dict[str, Any] = {
        "image/encoded": [Path(item.media.path).read_bytes()], "image/format": [b"jpeg"],
        "image/filename": [Path(item.media.path).name.encode()], "image/height": [height], "image/width": [width],
        **{f"image/object/bbox/{key}": boxes_array[:, i] for i, key in enumerate(("xmin", "ymin", "xmax", "ymax"))},
        "image/object/class/label": [label + 1 for label, _, _, _ in objects],
        "image/object/class/text": [names[label].encode() for label, _, _, _ in objects],
        "image/object/is_crowd": [int(crowd) for _, crowd, _, _ in objects],
    }
    if dense_masks:  # objects x height x width floats, one repeated field per value
        features["image/object/mask"] = np.asarray(masks, np.float32).reshape(-1)
        return encode_example(features, packed=False)
    features["image/object/mask"] = [cv2.imencode(".png", m.astype(np.uint8))[1].tobytes() for m in masks]
    return encode_example(features)


def write_tf_object_detection(dataset: Any, out: Path, dense_masks: bool = False) -> Path:
    """TensorFlow Object Detection API TFRecords of ``dataset``.

    PNG masks: ``train.tfrecord-0000N-of-00002`` shards, ``val.tfrecord`` and ``label_map.pbtxt``; dense
    masks: ``train.record``, ``val.record`` and no label map (labels come from the class texts).
    """
    from datumaro.components.annotation import AnnotationType
    from tfrecord_writer import write_tfrecord

    names = [category.name for category in dataset.categories()[AnnotationType.label]]
    records: dict[str, list[bytes]] = {}
    for item in sorted(dataset, key=lambda item: item.id):
        records.setdefault(_subset_name(item), []).append(_tf_example(item, names, dense_masks))
    for split, examples in records.items():
        if dense_masks:
            write_tfrecord(out / f"{split}.record", examples)
        elif split == "train":
            for shard in range(2):
                write_tfrecord(out / f"{split}.tfrecord-{shard:05d}-of-00002", examples[shard::2])
        else:
            write_tfrecord(out / f"{split}.tfrecord", examples)
    if not dense_masks:
        items = "".join(f"item {{\n  id: {i + 1}\n  name: '{name}'\n}}\n" for i, name in enumerate(names))
        (out / "label_map.pbtxt").write_text(items)
    return out


def instance_counts(prepared: PreparedData) -> dict[str, tuple[dict[str, int], int, int]]:
    """Subset -> (instances per label, crowd regions, images) of prepared data."""
    return {name: (dict(subset.stats.instances), subset.stats.crowd, subset.stats.images)
            for name, subset in prepared.subsets.items()}


def instance_areas(prepared: PreparedData) -> dict[str, float]:
    """Total non-crowd mask area per label over all subsets, from the written COCO files."""
    from pycocotools import mask as mask_utils

    areas: Counter = Counter()
    for subset in prepared.subsets.values():
        coco = json.loads(subset.ann_file.read_text())
        names = {category["id"]: category["name"] for category in coco["categories"]}
        sizes = {image["id"]: (image["height"], image["width"]) for image in coco["images"]}
        for ann in coco["annotations"]:
            if ann["iscrowd"]:
                continue
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):  # polygons: rasterize, as MMDetection will
                segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, *sizes[ann["image_id"]]))
            areas[names[ann["category_id"]]] += float(mask_utils.area(segmentation))
    return dict(areas)


def train_evaluate_predict(root: Path, out: Path) -> dict[str, Any]:
    """``otxlite train``, ``eval`` and ``predict`` on a dataset folder given as it is (no format or path option;
    only a short recipe for the test's time), each as its own process; returns eval's performance.json."""
    import subprocess
    import sys

    fast = ["data.input_size=[128,128]", "learning_parameters.batch_size=2", "learning_parameters.num_workers=0",
            "learning_parameters.learning_rate_warmup_iters=2", "learning_parameters.num_iters=2"]
    weights = str(out / "train" / "models" / "weights.pth")
    steps = [["train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(root), "-o", str(out / "train"),
              "--no-pretrained", *[arg for param in fast for arg in ("--param", param)]],
             ["eval", "--load-weights", weights, "--test-data-roots", str(root), "-o", str(out / "eval")],
             ["predict", "--load-weights", weights, "-i", str(root), "-o", str(out / "predict")]]
    for args in steps:
        result = subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0, (args[0], result.stdout[-3000:], result.stderr[-3000:])
    predictions = json.loads((out / "predict" / "predictions.json").read_text())
    assert len(predictions) >= 2 and all("boxes" in entry for entry in predictions)
    return json.loads((out / "eval" / "performance.json").read_text())
