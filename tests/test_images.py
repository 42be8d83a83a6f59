"""Images as a viewer shows them, everywhere: phone photos with an EXIF orientation, and every pixel format that
training's loader and the OpenVINO runtime must read alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from otxlite.core.images import decode_image, read_image, read_image_size

# Stored pixels of an upright image for each EXIF orientation: what a camera writes so that a viewer, applying
# the tag, shows the upright image again.
STORED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.swapaxes(0, 1), 6: lambda a: a[:, ::-1].swapaxes(0, 1),
          7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: a[::-1].swapaxes(0, 1)}


def save_with_orientation(rgb: np.ndarray, orientation: int, path: Path, **options) -> Path:
    """``rgb`` (upright) saved as a camera would: pixels stored turned, plus the EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(STORED[orientation](rgb))).save(path, exif=exif.tobytes(), **options)
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_as_a_viewer_does(orientation: int, suffix: str, tmp_path: Path) -> None:
    rgb = np.random.default_rng(orientation).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    options = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}
    path = save_with_orientation(rgb, orientation, tmp_path / f"photo{suffix}", **options)
    with Image.open(path) as image:
        viewer = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[:, :, ::-1]
    assert read_image_size(path) == (30, 50)
    assert np.array_equal(read_image(path), viewer)
    assert np.array_equal(decode_image(path.read_bytes()), viewer)


def _image_modes(tmp_path: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """One file per pixel format people have, and the 8-bit BGR image a viewer shows for it."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    files = {}
    Image.fromarray(grey).save(tmp_path / "grey.png")
    files["grey PNG"] = (tmp_path / "grey.png", np.repeat(grey[:, :, None], 3, axis=2))
    deep = rng.integers(0, 65536, (24, 40, 3), dtype=np.uint16)
    import cv2

    cv2.imwrite(str(tmp_path / "deep.png"), deep)  # 16 bits per sample (BGR)
    files["16-bit PNG"] = (tmp_path / "deep.png", (deep >> 8).astype(np.uint8))
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png")
    files["palette PNG"] = (tmp_path / "palette.png", np.asarray(palette.convert("RGB"))[:, :, ::-1])
    alpha = np.dstack([rgb, rng.integers(0, 256, (24, 40), dtype=np.uint8)])
    Image.fromarray(alpha, "RGBA").save(tmp_path / "rgba.png")
    files["RGBA PNG"] = (tmp_path / "rgba.png", rgb[:, :, ::-1])
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as cmyk:
        files["CMYK JPEG"] = (tmp_path / "cmyk.jpg", np.asarray(cmyk.convert("RGB"))[:, :, ::-1])
    return files


def test_every_pixel_format_loads_alike_in_training_and_the_runtime(tmp_path: Path) -> None:
    """Training's loader (MMDetection's pipeline step), the runtime's reader (predict, eval, explain) and serve's
    decoder give the same 8-bit BGR image, the one a viewer shows."""
    from mmdet.registry import TRANSFORMS

    import otxlite.training.dataset  # noqa: F401  (registers the pipelines' image loader)
    from otxlite.training.recipes import test_pipeline

    load = TRANSFORMS.build(test_pipeline((64, 64))[0])
    for name, (path, viewer) in _image_modes(tmp_path).items():
        runtime = read_image(path)
        training = load({"img_path": str(path)})["img"]
        assert runtime.dtype == np.uint8 and runtime.shape == viewer.shape, name
        assert np.array_equal(training, runtime) and np.array_equal(decode_image(path.read_bytes()), runtime), name
        assert np.abs(runtime.astype(int) - viewer).max() <= (2 if name == "CMYK JPEG" else 0), name


@pytest.fixture(scope="module")
def upright_score(coins_ir: Path, coins_val: Path, tmp_path_factory: pytest.TempPathFactory):
    """The coins model's mask mAP and boxes on the upright validation photo."""
    from otxlite.app.evaluate import evaluate
    from otxlite.runtime.predictor import Predictor

    report, _ = evaluate(coins_ir, coins_val, tmp_path_factory.mktemp("upright"))
    image = next((coins_val / "images" / "val").iterdir())
    boxes = Predictor(coins_ir).predict(read_image(image), report["confidence_threshold"]).boxes
    return report["mask_mAP"], boxes, report["confidence_threshold"]


def _phone_copy(coins_val: Path, out: Path, orientation: int, suffix: str) -> Path:
    """The validation photo saved as a phone saves it (turned pixels + orientation tag), same annotation file."""
    shutil.copytree(coins_val, out)
    (image,) = (out / "images" / "val").iterdir()
    rgb = np.asarray(Image.open(image).convert("RGB"))
    image.unlink()
    options = {"quality": 100, "subsampling": 0} if suffix == ".jpg" else {}
    save_with_orientation(rgb, orientation, image.with_suffix(suffix), **options)
    ann_file = out / "annotations" / "instances_val.json"
    coco = json.loads(ann_file.read_text())
    coco["images"][0]["file_name"] = image.with_suffix(suffix).name
    ann_file.write_text(json.dumps(coco))
    return out


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phone_photo_scores_as_the_upright_photo(orientation: int, upright_score, coins_ir: Path, coins_val: Path,
                                                  tmp_path: Path) -> None:
    """Stored turned with each EXIF orientation (lossless PNG): the same mask mAP and boxes as the upright photo."""
    from otxlite.app.evaluate import evaluate
    from otxlite.runtime.predictor import Predictor

    mask_map, boxes, threshold = upright_score
    assert mask_map > 0.4  # a model that learned: the check means something
    root = _phone_copy(coins_val, tmp_path / "phone", orientation, ".png")
    report, _ = evaluate(coins_ir, root, tmp_path / "eval")
    assert report["mask_mAP"] == pytest.approx(mask_map, abs=1e-6)
    (image,) = (root / "images" / "val").iterdir()
    assert np.allclose(Predictor(coins_ir).predict(read_image(image), threshold).boxes, boxes, atol=1e-3)


def test_phone_jpeg_scores_as_the_upright_photo(upright_score, coins_ir: Path, coins_val: Path,
                                                 tmp_path: Path) -> None:
    """The usual phone photo: a JPEG stored sideways (orientation 6), evaluated and predicted through the CLI."""
    from otxlite.cli import app
    from typer.testing import CliRunner

    mask_map, boxes, _ = upright_score
    root = _phone_copy(coins_val, tmp_path / "phone", 6, ".jpg")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--load-weights", str(coins_ir), "--test-data-roots", str(root),
                                 "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "performance.json").read_text())["mask_mAP"] == pytest.approx(mask_map,
                                                                                                          abs=0.03)
    result = runner.invoke(app, ["predict", "--load-weights", str(coins_ir), "-i", str(root / "images" / "val"),
                                 "-o", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    height, width = read_image_size(next((root / "images" / "val").iterdir()))
    found = np.array([[b["box"]["topX"] * width, b["box"]["topY"] * height, b["box"]["bottomX"] * width,
                       b["box"]["bottomY"] * height] for b in entry["boxes"]])
    assert len(found) == len(boxes)
    assert all(np.abs(found - box[:4]).max(axis=1).min() < 3 for box in boxes)  # each upright box found again


def test_annotation_of_the_unturned_pixels_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A COCO file that declares the stored (unturned) size of a photo whose EXIF orientation turns it by 90
    degrees: its masks were drawn on pixels no viewer shows, so the import stops and says why."""
    from otxlite.core.errors import OtxliteError
    from otxlite.data.prepare import convert_eval_data
    from otxlite.data.sample_data import make_sample_dataset

    root = make_sample_dataset(tmp_path / "coco", num_train=1, num_val=1, size=64)
    ann_file = root / "annotations" / "instances_val.json"
    coco = json.loads(ann_file.read_text())
    info = coco["images"][0]
    image = root / "images" / "val" / info["file_name"]
    upright = np.asarray(Image.open(image).convert("RGB").resize((48, 64)))  # 48 wide, 64 high when viewed
    image.unlink()
    save_with_orientation(upright, 6, image.with_suffix(".png"))
    info.update(file_name=image.with_suffix(".png").name, width=64, height=48)  # the stored pixels' size
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(OtxliteError, match=r"is 48x64 pixels \(as a viewer shows it\), but its annotations declare "
                                           r"64x48: .* EXIF orientation \(6\) turns its stored 64x48 pixels by 90"):
        convert_eval_data(root, ["disc", "star", "ring"])
