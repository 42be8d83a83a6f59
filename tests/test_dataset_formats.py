"""Dataset import: every instance-segmentation format gives the sample's labels and instances; clear errors."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from dataset_formats import (
    drop_crowd,
    export_datumaro,
    instance_areas,
    instance_counts,
    load_coco,
    write_azureml_jsonl,
    write_cityscapes_instances,
    write_labelme,
    write_tf_object_detection,
    write_yolo_segmentation,
)

from otxlite.data.formats import FORMATS, detect_format, import_dataset
from otxlite.data.prepare import prepare_training_data
from otxlite.data.split import pick_validation_subset, split_train_val
from otxlite.core.errors import OtxliteError
from otxlite.data.sample_data import make_sample_dataset

# Datumaro logs a warning per undeclared attribute while exporting.
logging.getLogger("root").setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images extracted from TFRecords go to a temporary cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_dataset(tmp_path_factory.mktemp("coco"), num_train=6, num_val=3, size=128, seed=0)


@pytest.fixture(scope="module")
def reference(sample: Path, tmp_path_factory: pytest.TempPathFactory):
    """The COCO original, prepared."""
    return prepare_training_data(sample, None, tmp_path_factory.mktemp("reference"))


def _without_crowd(counts: dict) -> dict:
    return {name: (per_label, 0, images) for name, (per_label, _, images) in counts.items()}


# format -> (write the sample in that format, does the format keep crowd regions)
WRITERS = {
    "coco": (lambda ds, out: export_datumaro(ds, out, "coco_instances"), True),
    # VOC has no crowd flag; the writer drops the crowd region (Datumaro would export it as an object).
    "voc": (lambda ds, out: export_datumaro(ds, out, "voc_instance_segmentation"), False),
    # CVAT keeps the crowd flag as a declared "is_crowd" attribute.
    "cvat": (lambda ds, out: export_datumaro(ds, out, "cvat"), True),
    # labelme's own LabelFile; crowd regions as its "__ignore__" label.
    "labelme": (write_labelme, True),
    # Datumaro's own format keeps polygons, masks, groups and the is_crowd attribute as they are.
    "datumaro": (lambda ds, out: export_datumaro(ds, out, "datumaro"), True),
    # YOLO has no crowd flag (Datumaro's YOLO exporters drop crowd regions too).
    "yolo": (write_yolo_segmentation, False),
    # Cityscapes marks a crowd region by a class id without an instance id.
    "cityscapes": (write_cityscapes_instances, True),
    "azureml": (write_azureml_jsonl, True),
    # TF Object Detection API: PNG masks per object, a label map, image/object/is_crowd.
    "tfrecord": (write_tf_object_detection, True),
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_format_round_trip(fmt: str, sample: Path, reference, tmp_path: Path) -> None:
    write, keeps_crowd = WRITERS[fmt]
    root = write(load_coco(sample), tmp_path / fmt)

    assert detect_format(root) == fmt
    prepared = prepare_training_data(root, None, tmp_path / "run")

    assert prepared.formats == {"train": fmt}
    assert prepared.split_note == "validation subset of the train folder"
    # Formats without a label list (LabelMe, AzureML) order labels by name: same set, maybe another order.
    assert set(prepared.labels) == set(reference.labels)
    expected = instance_counts(reference) if keeps_crowd else _without_crowd(instance_counts(reference))
    assert instance_counts(prepared) == expected
    # Polygons trace pixel centres, and polygon formats fill the rings' holes (Datumaro's COCO exporter
    # too: it writes non-crowd masks as polygons): areas agree only roughly.
    reference_areas, areas = instance_areas(reference), instance_areas(prepared)
    for label, area in reference_areas.items():
        tolerance = 0.3 if label == "ring" and fmt not in ("voc", "cityscapes") else 0.1
        assert areas[label] == pytest.approx(area, rel=tolerance), label


def _resized_copy(sample: Path, out: Path, fx: float, fy: float) -> Path:
    """The sample with every image file resized by (fx, fy) on disk; the annotation file still declares the old sizes
    (a resized export)."""
    shutil.copytree(sample, out)
    for image in (out / "images").rglob("*.*"):
        pixels = cv2.imread(str(image))
        cv2.imwrite(str(image), cv2.resize(pixels, None, fx=fx, fy=fy, interpolation=cv2.INTER_NEAREST))
    return out


# Formats whose files declare image sizes (or hold masks at a size), and the normalized ones that scale by definition.
DECLARE_SIZES = ("coco", "voc", "cvat", "labelme", "datumaro", "cityscapes", "tfrecord")


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_declared_size_of_the_same_aspect_is_scaled_to_the_file(fmt: str, sample: Path, reference, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write, keeps_crowd = WRITERS[fmt]
    root = write(load_coco(_resized_copy(sample, tmp_path / "resized", 2, 2)), tmp_path / fmt)
    prepared = prepare_training_data(root, None, tmp_path / "run")
    expected = instance_counts(reference) if keeps_crowd else _without_crowd(instance_counts(reference))
    assert instance_counts(prepared) == expected
    for label, area in instance_areas(reference).items():  # the masks cover the 2x images, not their top-left
        tolerance = 0.3 if label == "ring" and fmt not in ("voc", "cityscapes") else 0.1
        assert instance_areas(prepared)[label] == pytest.approx(4 * area, rel=tolerance), label
    warnings = capsys.readouterr().err
    if fmt in DECLARE_SIZES:
        # VOC and Cityscapes declare sizes only through their mask files: an image without objects has none.
        rescaled = 5 if fmt in ("voc", "cityscapes") else 6
        assert f"{rescaled} train image(s) are another size than their annotations declare" in warnings
        assert "128x128 declared, 256x256 on disk" in warnings and warnings.count("Warning:") == 2  # train, val
    else:
        assert "Warning" not in warnings


@pytest.mark.parametrize("fmt", DECLARE_SIZES)
def test_declared_size_of_another_aspect_is_refused(fmt: str, sample: Path, tmp_path: Path) -> None:
    root = WRITERS[fmt][0](load_coco(_resized_copy(sample, tmp_path / "resized", 2, 1)), tmp_path / fmt)
    with pytest.raises(OtxliteError, match=r"The image .* is 256x128 pixels \(as a viewer shows it\), but .* 128x128: "
                                           r"another aspect ratio, so its masks cannot be placed on it"):
        prepare_training_data(root, None, tmp_path / "run")


def test_separate_val_root_and_yolo_detected_over_datumaro(sample: Path, tmp_path: Path) -> None:
    dataset = load_coco(sample)
    train = write_yolo_segmentation(dataset.get_subset("train").as_dataset(), tmp_path / "train")
    val = write_yolo_segmentation(dataset.get_subset("val").as_dataset(), tmp_path / "val")
    prepared = prepare_training_data(train, val, tmp_path / "run")
    assert prepared.formats == {"train": "yolo", "val": "yolo"}
    assert prepared.subsets["train"].stats.images == 6 and prepared.subsets["val"].stats.images == 3


def test_yolo_roboflow_layout(sample: Path, tmp_path: Path) -> None:
    """Roboflow's YOLO export: ``train/images``, ``valid/labels``... and ``../`` paths in data.yaml."""
    root = write_yolo_segmentation(load_coco(sample), tmp_path / "yolo")
    for split, folder in (("train", "train"), ("val", "valid")):
        for kind in ("images", "labels"):
            (root / folder).mkdir(exist_ok=True)
            (root / kind / split).rename(root / folder / kind)
    names = (root / "data.yaml").read_text().split("names:")[1]
    (root / "data.yaml").write_text(f"train: ../train/images\nval: ../valid/images\nnames:{names}")
    prepared = prepare_training_data(root, None, tmp_path / "run")
    assert prepared.formats == {"train": "yolo"}
    assert prepared.subsets["train"].stats.images == 6 and prepared.subsets["val"].stats.images == 3


def test_cityscapes_official_label_ids(tmp_path: Path) -> None:
    """Without a label map the official ids apply: 26xxx are cars, 24 a crowd of persons, 7 (road) is stuff."""
    ids = np.full((64, 96), 7, np.uint16)
    ids[5:20, 5:30], ids[30:50, 40:90], ids[22:28, 0:10] = 26000, 26001, 24
    (tmp_path / "gtFine" / "val" / "town").mkdir(parents=True)
    (tmp_path / "leftImg8bit" / "val" / "town").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "gtFine" / "val" / "town" / "a_000001_gtFine_instanceIds.png"), ids)
    cv2.imwrite(str(tmp_path / "leftImg8bit" / "val" / "town" / "a_000001_leftImg8bit.png"), np.zeros((64, 96, 3)))
    imported = import_dataset(tmp_path, None, "--test-data-roots")
    assert imported.format == "cityscapes"
    (item,) = imported.items
    found = sorted((imported.labels[a.label], a.attributes["is_crowd"], int(a.image.sum())) for a in item.annotations)
    assert found == [("car", False, 15 * 25), ("car", False, 20 * 50), ("person", True, 6 * 10)]


def test_datumaro_exports_that_lose_instances_are_reported_as_such(sample: Path, tmp_path: Path) -> None:
    """Datumaro's own YOLO and Cityscapes exporters cannot write instance masks: nothing trainable comes back."""
    dataset = load_coco(sample)
    yolo = tmp_path / "yolo"
    drop_crowd(dataset).export(str(yolo), "yolo_ultralytics", save_media=True)
    prepared = prepare_training_data(yolo, None, tmp_path / "run_yolo")
    assert prepared.formats == {"train": "yolo"}
    assert sum(prepared.subsets["train"].stats.instances.values()) == 0
    assert prepared.subsets["train"].stats.box_only_skipped > 0

    cityscapes = tmp_path / "cityscapes"
    dataset.export(str(cityscapes), "cityscapes", save_media=True)
    prepared = prepare_training_data(cityscapes, None, tmp_path / "run_cityscapes")
    # Class ids without instance ids: each class region of an image is one crowd region.
    assert sum(prepared.subsets["train"].stats.instances.values()) == 0
    assert prepared.subsets["train"].stats.crowd > 0


def test_azureml_datastore_urls_resolve_to_local_images(sample: Path, tmp_path: Path) -> None:
    prefix = "azureml://subscriptions/s/resourcegroups/g/workspaces/w/datastores/d/paths/fridge/"
    root = write_azureml_jsonl(load_coco(sample), tmp_path / "aml", image_url_prefix=prefix)
    imported = import_dataset(root, None, "--train-data-roots")
    assert imported.format == "azureml"
    assert all(Path(item.media.path).is_file() for item in imported.items)
    assert {item.subset for item in imported.items} == {"train", "val"}


def test_tfrecord_dense_masks_without_label_map(sample: Path, reference, tmp_path: Path) -> None:
    """Dense float masks, unpacked repeated fields, no label map: labels from the class texts, in class id order."""
    root = write_tf_object_detection(load_coco(sample), tmp_path / "tf", dense_masks=True)
    assert not list(root.glob("*.pbtxt"))
    prepared = prepare_training_data(root, None, tmp_path / "run")
    assert prepared.formats == {"train": "tfrecord"}
    assert prepared.labels == reference.labels
    assert instance_counts(prepared) == instance_counts(reference)
    assert instance_areas(prepared) == pytest.approx(instance_areas(reference), rel=0.3)


def test_tfrecord_label_map_gives_the_coco_label_schema(sample: Path, reference, tmp_path: Path) -> None:
    root = write_tf_object_detection(load_coco(sample), tmp_path / "tf")
    imported = import_dataset(root, "tfrecord", "--train-data-roots")
    assert imported.labels == reference.labels
    assert sorted(item.id for item in imported.items) == sorted(item.id for item in load_coco(sample))
    again = import_dataset(root, "tfrecord", "--train-data-roots")  # images come from the cache the second time
    assert [item.media.path for item in again.items] == [item.media.path for item in imported.items]


# ---- errors: one clear OtxliteError each -------------------------------------------------------


def _copy_sample(sample: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sample, tmp_path / "data"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OtxliteError, match="does not exist"):
        prepare_training_data(tmp_path / "nope", None, tmp_path / "run")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(OtxliteError, match="empty"):
        prepare_training_data(tmp_path / "empty", None, tmp_path / "run")


def test_undetectable_format_lists_formats_tried(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    with pytest.raises(OtxliteError, match="Cannot tell the dataset format") as err:
        prepare_training_data(tmp_path / "data", None, tmp_path / "run")
    assert all(name in str(err.value) for name in FORMATS)


def test_json_that_does_not_parse(sample: Path, tmp_path: Path) -> None:
    root = _copy_sample(sample, tmp_path)
    ann = root / "annotations" / "instances_train.json"
    ann.write_text('{\n  "images": [\n    {"id": 1,, "file_name": "x.jpg"}\n  ]\n}\n')
    with pytest.raises(OtxliteError) as err:
        prepare_training_data(root, None, tmp_path / "run")
    assert "instances_train.json" in str(err.value) and "line 3, column 14" in str(err.value)


def test_azureml_line_that_does_not_parse(sample: Path, tmp_path: Path) -> None:
    root = write_azureml_jsonl(load_coco(sample), tmp_path / "aml")
    lines = (root / "val.jsonl").read_text().splitlines()
    column = lines[1].index('"image_details"') + 1
    lines[1] = lines[1].replace('"image_details"', ',"image_details"')
    (root / "val.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(OtxliteError, match=rf"val\.jsonl, line 2, column {column}"):
        prepare_training_data(root, None, tmp_path / "run")


def test_azureml_line_without_label(sample: Path, tmp_path: Path) -> None:
    root = write_azureml_jsonl(load_coco(sample), tmp_path / "aml")
    with (root / "train.jsonl").open("a") as file:
        file.write(json.dumps({"image_url": "images/train_0001.jpg"}) + "\n")
    with pytest.raises(OtxliteError, match=r"train\.jsonl, line 7: the key 'label' is missing"):
        prepare_training_data(root, None, tmp_path / "run")


def test_annotation_of_missing_image(sample: Path, tmp_path: Path) -> None:
    root = _copy_sample(sample, tmp_path)
    (root / "images" / "train" / "train_0002.jpg").unlink()
    with pytest.raises(OtxliteError, match="train_0002.jpg"):
        prepare_training_data(root, None, tmp_path / "run")


def test_unreadable_image_is_named_or_skipped(sample: Path, tmp_path: Path) -> None:
    root = _copy_sample(sample, tmp_path)
    (root / "images" / "train" / "train_0003.jpg").write_bytes(b"not an image")
    with pytest.raises(OtxliteError, match="train_0003.jpg"):
        prepare_training_data(root, None, tmp_path / "run")
    prepared = prepare_training_data(root, None, tmp_path / "run", skip_bad_images=True)
    assert prepared.subsets["train"].stats.bad_images_skipped == 1
    assert prepared.subsets["train"].stats.images == 5


def test_undeclared_category_id(sample: Path, tmp_path: Path) -> None:
    root = _copy_sample(sample, tmp_path)
    ann = root / "annotations" / "instances_train.json"
    coco = json.loads(ann.read_text())
    coco["annotations"][0]["category_id"] = 99
    ann.write_text(json.dumps(coco))
    with pytest.raises(OtxliteError, match=r"item \d+ \(train\) uses label/category id 99, which the dataset does not"):
        prepare_training_data(root, None, tmp_path / "run")


@pytest.mark.parametrize("breakage", ["items", "annotation type"])
def test_datumaro_broken_annotation_file_is_named(breakage: str, sample: Path, tmp_path: Path) -> None:
    root = export_datumaro(load_coco(sample), tmp_path / "dm", "datumaro")
    ann = root / "annotations" / "val.json"
    data = json.loads(ann.read_text())
    if breakage == "items":
        del data["items"]
    else:
        next(item for item in data["items"] if item["annotations"])["annotations"][0]["type"] = "blob"
    ann.write_text(json.dumps(data))
    with pytest.raises(OtxliteError) as err:
        prepare_training_data(root, None, tmp_path / "run")
    message = str(err.value)
    assert f"the annotation file {ann}" in message and ("'items'" in message or "'blob'" in message)
    assert "\n" not in message


def _tf_sample(sample: Path, tmp_path: Path) -> Path:
    return write_tf_object_detection(load_coco(sample), tmp_path / "tf", dense_masks=True)


def test_tfrecord_truncated_file(sample: Path, tmp_path: Path) -> None:
    record = _tf_sample(sample, tmp_path) / "val.record"
    record.write_bytes(record.read_bytes()[:-10])
    with pytest.raises(OtxliteError, match=rf"{record}, record 2: the file ends inside the record"):
        prepare_training_data(record.parent, None, tmp_path / "run")


def test_tfrecord_crc_mismatch(sample: Path, tmp_path: Path) -> None:
    record = _tf_sample(sample, tmp_path) / "train.record"
    data = bytearray(record.read_bytes())
    second = 12 + struct.unpack("<Q", data[:8])[0] + 4  # start of record 1
    data[second + 12 + 100] ^= 0xFF  # a byte of its data
    record.write_bytes(bytes(data))
    with pytest.raises(OtxliteError, match=rf"{record}, record 1: CRC mismatch of the record's data"):
        prepare_training_data(record.parent, None, tmp_path / "run")


def test_tfrecord_record_that_is_not_an_example(sample: Path, tmp_path: Path) -> None:
    from tfrecord_writer import frame_record

    record = _tf_sample(sample, tmp_path) / "val.record"
    record.write_bytes(record.read_bytes() + frame_record(b"\x0a\xff\xff\x03not a protobuf"))
    with pytest.raises(OtxliteError, match=rf"{record}, record 3: the record is not a tf.train.Example"):
        prepare_training_data(record.parent, None, tmp_path / "run")


def test_tfrecord_mask_count_and_undeclared_class(sample: Path, tmp_path: Path) -> None:
    from tfrecord_writer import encode_example, write_tfrecord

    root = tmp_path / "tf"
    image = next((sample / "images" / "val").glob("*.jpg"))
    example = {"image/encoded": [image.read_bytes()], "image/filename": [image.name.encode()],
               "image/object/bbox/xmin": [0.1], "image/object/bbox/ymin": [0.1], "image/object/bbox/xmax": [0.5],
               "image/object/bbox/ymax": [0.5], "image/object/class/label": [3], "image/object/mask": []}
    write_tfrecord(root / "val.tfrecord", [encode_example(example)])
    (root / "label_map.pbtxt").write_text("item { id: 1 name: 'disc' }\nitem { id: 2 name: 'star' }\n")
    with pytest.raises(OtxliteError, match=r"val\.tfrecord, record 0: 'image/object/mask' holds 0 masks for 1 objects"):
        import_dataset(root, None, "--test-data-roots")
    del example["image/object/mask"]  # box only: imported, then skipped with a count; but class 3 is unknown
    write_tfrecord(root / "val.tfrecord", [encode_example(example)])
    with pytest.raises(OtxliteError, match=r"record 0: an object has class id 3, which the label map does not declare"):
        import_dataset(root, None, "--test-data-roots")


def test_yolo_undeclared_class_id(sample: Path, tmp_path: Path) -> None:
    root = write_yolo_segmentation(load_coco(sample), tmp_path / "yolo")
    label_file = next(p for p in sorted((root / "labels" / "train").glob("*.txt")) if p.read_text())
    label_file.write_text("7 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with pytest.raises(OtxliteError, match=rf"{label_file.name}, line 1: class id 7 is not declared"):
        prepare_training_data(root, None, tmp_path / "run")


@pytest.mark.parametrize("width", [80, 40])
def test_dataset_table_is_never_cut(width: int, reference) -> None:
    """Labels are rows, so the table fits narrow terminals; a long label name folds instead of being cut."""
    from dataclasses import replace

    from rich.console import Console

    from otxlite.data.report import dataset_table

    long_name = "a_label_name_much_longer_than_the_terminal_is_wide_" * 2
    data = replace(reference, labels=[*reference.labels, long_name])
    console = Console(width=width, record=True)
    console.print(dataset_table(data))
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= width
    assert long_name in "".join(line.strip("│ ").split("│")[0].strip() for line in text.splitlines())
    train, val = (reference.subsets[name].stats for name in ("train", "val"))
    for label in reference.labels:
        row = next(line for line in text.splitlines() if f"instances of {label} " in line)
        assert [cell.strip() for cell in row.split("│")][2:4] == [str(train.instances[label]), str(val.instances[label])]


# ---- split ----------------------------------------------------------------------------------------


def _item(name: str, labels: list[int], subset: str = "train") -> SimpleNamespace:
    return SimpleNamespace(id=name, subset=subset, annotations=[SimpleNamespace(label=label) for label in labels])


def test_split_is_deterministic_80_20_and_keeps_labels_on_both_sides() -> None:
    items = [_item(f"img{i:03d}", [i % 3]) for i in range(50)]
    items += [_item("rare_a", [3]), _item("rare_b", [3]), _item("single", [4]), _item("negative", [])]
    train, val = split_train_val(items, seed=0)
    again_train, again_val = split_train_val(list(reversed(items)), seed=0)

    assert [i.id for i in train] == [i.id for i in again_train] and [i.id for i in val] == [i.id for i in again_val]
    assert len(val) == round(len(items) * 0.2) and len(train) + len(val) == len(items)
    assert {i.id for i in train}.isdisjoint(i.id for i in val)
    labels_of = lambda part: {ann.label for item in part for ann in item.annotations}  # noqa: E731
    assert {0, 1, 2, 3} <= labels_of(train) and {0, 1, 2, 3} <= labels_of(val)
    assert "single" in {i.id for i in train}  # a label with one image stays in training
    assert [i.id for i in split_train_val(items, seed=1)[1]] != [i.id for i in val]


def test_pick_validation_subset() -> None:
    items = [_item("a", [0]), _item("b", [0], "val"), _item("c", [1], "valid"), _item("d", [1])]
    train, val = pick_validation_subset(items)
    assert [i.id for i in train] == ["a", "d"] and [i.id for i in val] == ["b", "c"]
    assert pick_validation_subset([_item("a", [0]), _item("b", [0], "test")]) is None
    assert pick_validation_subset([_item("a", [0], "val")]) is None  # only validation: nothing to train on


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["coco", "voc", "tfrecord"])
def test_one_epoch_of_training_per_format(fmt: str, sample: Path, reference, tmp_path: Path) -> None:
    """Imported data feeds MMDetection: one real epoch trains, with the COCO original's labels. Every format
    becomes the same prepared COCO files (test_format_round_trip compares them with the original), so three
    kinds suffice here: COCO itself, one Datumaro import with PNG masks (VOC), otxlite's own TFRecord reader."""
    from conftest import FAST_PARAMS

    from otxlite.data.labels import load_label_schema
    from otxlite.app.train import train

    write, _ = WRITERS[fmt]
    root = write(load_coco(sample), tmp_path / fmt)
    result = train("MaskRCNN-ResNet18", root, output=tmp_path / "run", pretrained=False,
                   params=FAST_PARAMS + ["learning_parameters.num_iters=1", "data.input_size=[96,96]"])
    assert set(load_label_schema(result.weights.parent / "label_schema.json")) == set(reference.labels)
    assert (result.run_dir / "results.csv").read_text().count("\n") == 2  # header + one epoch
