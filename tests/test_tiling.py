"""Tiling: the grid, the settings' checks, training tiles with masks crossing tile edges, the mask-aware merge,
and tiled inference through the OpenVINO Predictor."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import slow_fixture
from pycocotools import mask as mask_utils

from otxlite.core.errors import OtxliteError
from otxlite.core.templates import apply_overrides, with_defaults
from otxlite.core.tiling import Piece, TilingSettings, auto_tile_size, merge, pieces_of, tile_windows, tiling_settings
from otxlite.data.tiling import instance_mask, tile_subset

SETTINGS = TilingSettings(enable=True, tile_size=40, overlap=0.5)


def test_grid_is_overlapping_tiles_up_to_the_edges() -> None:
    tiles = tile_windows(100, 60, SETTINGS)
    # a tile every 20 px until one reaches the edge (Model API would add tiles starting at x = 80 and y = 40 too)
    assert {(x0, y0) for x0, y0, _, _ in tiles} == {(x, y) for x in (0, 20, 40, 60) for y in (0, 20)}
    assert all(x1 == min(x0 + 40, 100) and y1 == min(y0 + 40, 60) for x0, y0, x1, y1 in tiles)
    covered = np.zeros((60, 100), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    with_whole = tile_windows(100, 60, TilingSettings(enable=True, tile_size=40, overlap=0.5, full_image=True))
    assert with_whole == [(0, 0, 100, 60), *tiles]
    assert tile_windows(40, 30, SETTINGS) == [(0, 0, 40, 30)]  # no larger than a tile: the whole image alone


def test_auto_tile_size_follows_the_objects() -> None:
    assert auto_tile_size([20.0, 18.0, 22.0]) == 320  # the median object spans 1/16 of the tile
    assert auto_tile_size([2.0]) == 256 and auto_tile_size([500.0]) == 1024 and auto_tile_size([]) == 1024
    params = with_defaults({"tiling": {}})
    assert tiling_settings(params) is None
    on = apply_overrides(params, ["tiling.enable=true", "tiling.tile_size=auto"])
    assert tiling_settings(on, [20.0]).tile_size == 320
    assert tiling_settings(apply_overrides(on, ["tiling.tile_size=512"])).tile_size == 512


@pytest.mark.parametrize("param, expected", [
    ("tiling.tile_size=16", ">= 32"),
    ("tiling.tile_size=huge", "auto, or a number"),
    ("tiling.overlap=1", "< 1"),
    ("tiling.overlap=-0.1", ">= 0"),
    ("tiling.iou_threshold=2", "<= 1"),
    ("tiling.max_objects=0", ">= 1"),
])
def test_bad_tiling_settings_are_one_paragraph(param: str, expected: str) -> None:
    with pytest.raises(OtxliteError, match="out of range") as error:
        apply_overrides(with_defaults({"tiling": {}}), [param])
    assert expected in str(error.value)


def coco_file(folder: Path, image: np.ndarray, masks: list[np.ndarray]) -> Path:
    """A one-image COCO file with RLE masks (category 1)."""
    cv2.imwrite(str(folder / "big.png"), image)
    annotations = []
    for i, mask in enumerate(masks, 1):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({"id": i, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(mask.sum()),
                            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                            "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()}})
    path = folder / "train.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": str(folder / "big.png"), "width": image.shape[1],
                                            "height": image.shape[0]}], "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return path


def test_training_tiles_keep_partial_masks_and_drop_slivers(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (60, 100, 3), np.uint8)
    crossing = np.zeros((60, 100), bool)
    crossing[5:15, 30:50] = True  # crosses the tile edges at x = 40 (tiles start every 20 px)
    sliver = np.zeros((60, 100), bool)
    sliver[50:57, 45:62] = True  # 119 px; 2 columns (14 px) reach into the tiles starting at x = 60: a sliver
    ann = coco_file(tmp_path, image, [crossing, sliver])
    out, stats = tile_subset(ann, tmp_path / "tiles", TilingSettings(enable=True, tile_size=40, overlap=0.5,
                                                                     sampling_ratio=0.0))
    coco = json.loads(out.read_text())
    assert stats.images == 1 and stats.slivers_dropped >= 1 and stats.partial_instances >= 1
    assert stats.tiles == len(coco["images"]) and stats.negatives_kept == 0 and stats.negatives_dropped > 0
    for info in coco["images"]:  # every kept tile holds an object; its pixels and masks are the original's
        x0, y0 = (int(v) for v in Path(info["file_name"]).stem.split("_")[-2:])
        tile = cv2.imread(info["file_name"])
        assert np.array_equal(tile, image[y0:y0 + info["height"], x0:x0 + info["width"]])
        parts = [instance_mask(a, info["height"], info["width"]) for a in coco["annotations"]
                 if a["image_id"] == info["id"]]
        assert parts
        originals = [m[y0:y0 + info["height"], x0:x0 + info["width"]] for m in (crossing, sliver)]
        assert all(any(np.array_equal(part, original) for original in originals) for part in parts)
    _, all_tiles = tile_subset(ann, tmp_path / "all", SETTINGS)
    assert all_tiles.negatives_dropped == 0 and all_tiles.tiles == len(tile_windows(100, 60, SETTINGS))


def piece(score: float, label: int, x0: int, y0: int, size: int) -> Piece:
    return Piece(score, label, np.ones((size, size), bool), x0, y0)


def test_merge_drops_the_weaker_copy_of_one_object_and_places_masks_in_the_image() -> None:
    pieces = [piece(0.9, 0, 10, 10, 20), piece(0.6, 0, 12, 10, 20),  # the same object seen by two tiles
              piece(0.5, 1, 12, 10, 20),  # another class at the same place: kept
              piece(0.8, 0, 50, 40, 10)]  # elsewhere: kept
    boxes, scores, labels, masks = merge(pieces, TilingSettings(enable=True, iou_threshold=0.5), 60, 100)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.5]) and labels.tolist() == [0, 0, 1]
    assert masks.shape == (3, 60, 100) and masks[0, 10:30, 10:30].all() and masks[0].sum() == 400
    assert boxes[1].tolist() == [50, 40, 60, 50]
    capped = merge(pieces, TilingSettings(enable=True, iou_threshold=0.5, max_objects=1), 60, 100)
    assert capped[1].tolist() == pytest.approx([0.9])


def test_pieces_are_cut_to_their_masks_in_full_image_pixels() -> None:
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 5:9, 10:20] = True  # the second mask is empty: dropped
    (only,) = pieces_of(masks, np.array([0.7, 0.4]), np.array([1, 0]), (60, 20, 100, 60))
    assert (only.x0, only.y0, only.mask.shape, only.label) == (70, 25, (4, 10), 1)


def test_tiled_predictor_merges_the_whole_image_and_its_tiles(tmp_path: Path) -> None:
    """The IR's runtime pipelines the windows through its requests and merges them as ``merge`` does."""
    from test_serve import make_synthetic_ir

    from otxlite.runtime.predictor import Predictor

    settings = TilingSettings(enable=True, tile_size=64, overlap=0.0, full_image=True)
    plain = Predictor(make_synthetic_ir(tmp_path / "plain"))
    tiled = Predictor(make_synthetic_ir(tmp_path / "tiled", tiling=settings))
    assert tiled.metadata.tiling == settings
    image = np.full((128, 256, 3), 200, np.uint8)
    found = tiled.predict(image, 0.35)
    windows = tile_windows(256, 128, settings)
    assert len(windows) == 9
    expected = merge([p for w in windows for p in pieces_of(*(lambda f: (f.masks, f.scores, f.labels))(
        plain.predict(image[w[1]:w[3], w[0]:w[2]], 0.35)), w)], settings, 128, 256)
    assert len(found.scores) == 9 and np.array_equal(found.masks, expected[3])  # one cat per window, none merged
    assert found.masks[:, 24, 64 + 24].any()  # the cat of the tile at x = 64, in full-image pixels


# --- a tiled model through every verb -----------------------------------------------------------------------------

TILE = 128


@slow_fixture(scope="module")
def tiled_maskrcnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, weights.pth, IR) of a Mask R-CNN trained for 1 epoch on 128 px tiles of 384 px images."""
    from otxlite.export.pipeline import export_openvino
    from otxlite.app.train import train
    from otxlite.data.sample_data import make_small_objects_dataset

    root = tmp_path_factory.mktemp("tiled")
    data = make_small_objects_dataset(root / "data", 2, 1, 384, 25)
    result = train("MaskRCNN-ResNet18", data, output=root / "run", pretrained=False, device="cpu", params=[
        "tiling.enable=true", f"tiling.tile_size={TILE}", "tiling.overlap=0.25", f"data.input_size=[{TILE},{TILE}]",
        "learning_parameters.num_iters=1", "learning_parameters.batch_size=4", "learning_parameters.num_workers=0"])
    return data, result.weights, export_openvino(result.weights, root / "ir")


@pytest.mark.slow
def test_tiling_settings_travel_from_training_to_the_ir(tiled_maskrcnn) -> None:
    import openvino as ov

    from otxlite.core.artifacts import load_weights, read_metadata

    data, weights, xml = tiled_maskrcnn
    stored = load_weights(weights).record.tiling
    assert stored is not None and stored.tile_size == TILE and stored.overlap == 0.25
    model = ov.Core().read_model(str(xml))
    assert read_metadata(model, xml).tiling == stored
    assert model.get_rt_info(["model_info", "tile_size"]).astype(str) == str(TILE)
    # the training tiles are the images the model was fit on: 128 px crops of the 384 px images
    tiles = json.loads(next((weights.parents[1] / "data" / "tiles").glob("train.json")).read_text())
    assert tiles["images"] and all(i["width"] <= TILE and i["height"] <= TILE for i in tiles["images"])
    # validation ran on the one whole validation image (tiled in PyTorch), not on its tiles
    with open(weights.parents[1] / "results.csv", newline="") as f:
        validated = [row for row in csv.DictReader(f) if row.get("val/num_images")]
    assert validated and {float(row["val/num_images"]) for row in validated} == {1.0}


@pytest.mark.slow
def test_model_apis_tiler_reads_the_ir(tiled_maskrcnn, monkeypatch) -> None:
    import openvino as ov
    from model_api.adapters import OpenvinoAdapter
    from model_api.models import Model
    from model_api.tilers import InstanceSegmentationTiler

    data, _, xml = tiled_maskrcnn
    model = Model.create_model(OpenvinoAdapter(ov.Core(), str(xml), device="CPU"))
    tiler = InstanceSegmentationTiler(model, execution_mode="sync")
    assert (tiler.tile_size, tiler.tiles_overlap, tiler.max_pred_number) == (TILE, 0.25, 200)
    image = cv2.imread(str(sorted((data / "images" / "val").glob("*.png"))[0]))
    # Model API's merge tests `not saliency_map` on the empty array a model without saliency outputs gives
    # (ValueError); otxlite's IRs have no saliency outputs, so that step is skipped here
    monkeypatch.setattr(InstanceSegmentationTiler, "_merge_saliency_maps", lambda self, *args: [])
    result = tiler(image)
    assert len(result.masks) == 0 or result.masks.shape[1:] == image.shape[:2]


@pytest.mark.slow
def test_predict_and_eval_tile_a_tiled_model(tiled_maskrcnn, tmp_path: Path) -> None:
    data, weights, xml = tiled_maskrcnn
    image = sorted((data / "images" / "val").glob("*.png"))[0]
    run = subprocess.run([sys.executable, "-m", "otxlite.cli", "predict", "--load-weights", str(xml), "-i", str(image),
                          "-o", str(tmp_path / "predict"), "--confidence-threshold", "0.01"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    (entry,) = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert all(0 <= v <= 1 for b in entry["boxes"] for v in b["box"].values())
    run = subprocess.run([sys.executable, "-m", "otxlite.cli", "eval", "--load-weights", str(weights),
                          "--test-data-roots", str(data), "-o", str(tmp_path / "eval")], capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "each whole image is tiled and the tiles' detections merged" in " ".join(run.stdout.split())
    assert json.loads((tmp_path / "eval" / "performance.json").read_text())["num_images"] == 3  # train + val


@slow_fixture(scope="module")
def tiled_coins(coins: Path, tmp_path_factory: pytest.TempPathFactory):
    """RTMDet-Ins-tiny trained from random weights on 128 px tiles of the coins photo; its validation tile is
    validated whole, tiled in PyTorch."""
    from otxlite.app.train import train

    return train("RTMDet-Ins-tiny", coins, output=tmp_path_factory.mktemp("tiled_coins"), pretrained=False, params=[
        "tiling.enable=true", f"tiling.tile_size={TILE}", "tiling.overlap=0.25", f"data.input_size=[{TILE},{TILE}]",
        "learning_parameters.num_iters=60", "learning_parameters.batch_size=4",
        "learning_parameters.learning_rate_warmup_iters=20", "learning_parameters.num_workers=0"])


def test_tiled_model_scores_the_same_in_pytorch_and_as_an_ir(tiled_coins, coins_val: Path, tmp_path: Path) -> None:
    """On a tiled model that learned, training's validation (PyTorch, whole image tiled and merged), ``eval`` of
    its ``weights.pth`` (the same in mmengine's test loop) and ``eval`` of its IR agree on the same image."""
    from otxlite.app.evaluate import evaluate
    from otxlite.export.pipeline import export_openvino

    validation = json.loads((tiled_coins.run_dir / "performance.json").read_text())
    assert validation["num_images"] == 1 and validation["mask_mAP"] >= 0.3, f"the model must learn: {validation}"
    pytorch, _ = evaluate(tiled_coins.weights, coins_val, tmp_path / "eval_pth")
    assert pytorch["num_images"] == 1 and abs(pytorch["mask_mAP"] - validation["mask_mAP"]) <= 1e-3
    ir, _ = evaluate(export_openvino(tiled_coins.weights, tmp_path / "ir"), coins_val, tmp_path / "eval")
    assert abs(ir["mask_mAP"] - pytorch["mask_mAP"]) <= 0.01, (ir["mask_mAP"], pytorch["mask_mAP"])
