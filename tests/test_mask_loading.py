"""Training masks: on large images, polygons stay polygons through the augmentation and are rasterized at the
input size; RLE masks and smaller images load bitmaps; both give the same training targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from otxlite.data.prepare import keep_polygon_masks
from otxlite.data.sample_data import make_small_objects_dataset
from otxlite.training.recipes import train_pipeline


def _write_coco(path: Path, segmentations: list[object], crowd: list[int], side: int = 2048) -> Path:
    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": seg, "iscrowd": c,
                    "area": 1.0, "bbox": [0, 0, 1, 1]} for i, (seg, c) in enumerate(zip(segmentations, crowd))]
    images = [{"id": 1, "file_name": "a.png", "width": side, "height": side // 2}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": []}))
    return path


def test_polygons_are_kept_on_large_images_with_polygon_masks_only(tmp_path: Path) -> None:
    polygon = [[0, 0, 4, 0, 4, 4]]
    rle = {"size": [8, 8], "counts": "0"}
    assert keep_polygon_masks(_write_coco(tmp_path / "a.json", [polygon, polygon], [0, 0]), (512, 512))
    assert not keep_polygon_masks(_write_coco(tmp_path / "b.json", [polygon, rle], [0, 0]), (512, 512))
    # a crowd region is ignored by training in either form, so its RLE does not force bitmaps
    assert keep_polygon_masks(_write_coco(tmp_path / "c.json", [polygon, rle], [0, 1]), (512, 512))
    # images no larger than twice the input: bitmaps, as always
    assert not keep_polygon_masks(_write_coco(tmp_path / "d.json", [polygon], [0], side=1024), (512, 512))


def _targets(data: Path, polygons: bool) -> np.ndarray:
    """The first training sample's masks as the heads get them (``to_tensor`` at the input size)."""
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules

    import otxlite.training.dataset  # noqa: F401  (registers the pipelines' image loader)

    register_all_modules()
    pipeline = [step for step in train_pipeline("otx", (256, 256), mosaic=False, polygons=polygons)
                if step["type"] != "RandomFlip"]
    dataset = CocoDataset(ann_file=str(data / "annotations" / "instances_train.json"),
                          data_prefix=dict(img=str(data / "images" / "train") + "/"),
                          metainfo=dict(classes=("disc", "square")), pipeline=pipeline)
    masks = dataset[0]["data_samples"].gt_instances.masks
    assert type(masks).__name__ == ("PolygonMasks" if polygons else "BitmapMasks")
    return masks.to_ndarray().astype(bool)


def test_polygons_rasterized_after_the_resize_match_resized_bitmaps(tmp_path: Path) -> None:
    data = make_small_objects_dataset(tmp_path / "data", 1, 1, 1024, 30, object_px=(24, 48))
    from_polygons, from_bitmaps = _targets(data, polygons=True), _targets(data, polygons=False)
    assert from_polygons.shape == from_bitmaps.shape and from_polygons.shape[0] >= 20
    assert from_polygons.shape[1:] == (256, 256)
    inter = (from_polygons & from_bitmaps).sum(axis=(1, 2))
    union = (from_polygons | from_bitmaps).sum(axis=(1, 2))
    assert (inter / union).min() > 0.6 and (inter / union).mean() > 0.8  # objects of 6-12 px after the resize
