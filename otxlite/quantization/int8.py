"""NNCF post-training INT8 quantization of an exported IR.

Only the dense network is quantized: convolutions and fully connected layers with constant weights in
the backbone, the neck and the head layers the model's family names (``Family.int8_scopes`` in
``otxlite.families``). Everything else (box decoding, TopK, NMS, RoI feature extraction, mask pasting,
dynamic mask kernels, prototype products) is in NNCF's ignored scope, so detections are not degraded and
statistics collection never runs on dynamic-shape post-processing. The layers that turn features into
scores, boxes and mask logits stay FP32 too: they are tiny and most sensitive to rounding.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from otxlite.core.artifacts import ModelMetadata, is_optimized
from otxlite.core.console import err_console
from otxlite.core.errors import OtxliteError
from otxlite.core.tiling import tile_windows
from otxlite.data.formats import DataOptions
from otxlite.export.fp16_weights import compress_float_weights
from otxlite.quantization.accuracy_control import BoundResult, quantize_within_bound

QUANTIZED_TYPES = {"Convolution", "GroupConvolution", "MatMul"}
PRESETS = ("performance", "mixed")
MIN_VALIDATION_IMAGES, MIN_VALIDATION_INSTANCES = 20, 50  # fewer: the accuracy bound is mostly noise


@dataclass(frozen=True)
class Int8Settings:
    """How to quantize: calibration images, NNCF preset, and the accuracy bound (with validation data)."""

    subset_size: int
    preset: str
    max_accuracy_drop: float | None
    accept_accuracy_drop: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise OtxliteError(f"--preset {self.preset}: choose {' or '.join(PRESETS)}.")


def int8_settings(record: ModelMetadata, subset_size: int | None = None, preset: str | None = None,
                  max_accuracy_drop: float | None = None, accept_accuracy_drop: bool = False) -> Int8Settings:
    """The settings given, the rest from the model record's ``optimization_settings`` (the template's
    ``optimization`` hyper-parameters at training)."""
    defaults = record.optimization_settings
    return Int8Settings(
        subset_size=subset_size or int(defaults["subset_size"]), preset=preset or str(defaults["preset"]),
        max_accuracy_drop=defaults["max_accuracy_drop"] if max_accuracy_drop is None else max_accuracy_drop,
        accept_accuracy_drop=accept_accuracy_drop)


def _has_constant_weights(op: Any) -> bool:
    node = op.input_value(1).get_node()
    while node.get_type_name() in ("Convert", "Reshape", "Unsqueeze"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def quantizable(op: Any, scopes: tuple[str, ...]) -> bool:
    """True for the dense layers otxlite quantizes (see the module docstring) under the name prefixes ``scopes``."""
    return (op.get_type_name() in QUANTIZED_TYPES and op.get_friendly_name().startswith(scopes)
            and _has_constant_weights(op))


def ignored_scope(model: Any, metadata: ModelMetadata) -> Any:
    """NNCF ignored scope: every operation that is not a quantizable dense layer of the model's family."""
    import nncf

    scopes = metadata.model_family.quantized_scopes
    names = [op.get_friendly_name() for op in model.get_ordered_ops() if not quantizable(op, scopes)]
    return nncf.IgnoredScope(names=names, validate=False)


def is_quantized(model: Any) -> bool:
    """True if the IR already holds FakeQuantize/FakeConvert operations or otxlite INT8 metadata."""
    if is_optimized(model):
        return True
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ordered_ops())


def calibration_images(train_root: Path, subset_size: int, data_options: DataOptions, seed: int = 0) -> list[Path]:
    """Up to ``subset_size`` training image paths, chosen with a fixed seed."""
    from otxlite.data.formats import import_dataset

    dataset = import_dataset(train_root, data_options.format, "--train-data-roots", data_options.data_root)
    paths = sorted({str(item.media.path) for item in dataset.items if getattr(item.media, "path", None)})
    random.Random(seed).shuffle(paths)
    if len(paths) < subset_size:
        err_console.print(f"[yellow]Note:[/] --subset-size {subset_size}, but {train_root} has {len(paths)} images: "
                          f"calibrating on all {len(paths)}.")
    return [Path(p) for p in paths[:subset_size]]


def finalize(model: Any) -> Any:
    """What happens to a quantized model before it is saved (scored candidates must be the saved model)."""
    compress_float_weights(model)
    return model


def quantize_ir(fp32_xml: Path, calibration: list[Path], settings: Int8Settings, output_xml: Path,
                val_file: Path | None = None) -> tuple[Path, BoundResult | None]:
    """Quantize the FP32 IR ``fp32_xml`` on the ``calibration`` images and save it (with its record) as
    ``output_xml``. With ``val_file`` (a prepared COCO file) and ``settings.max_accuracy_drop``, its mask mAP is
    kept within that of the FP32 IR by putting layer groups back into FP32
    (``otxlite.quantization.accuracy_control``); returns the saved IR and the accuracy control's result."""
    import nncf
    import openvino as ov

    from otxlite.core.artifacts import read_metadata, write_metadata
    from otxlite.core.fileio import save_ir_atomic
    from otxlite.core.images import read_image
    from otxlite.runtime.predictor import preprocess

    model = ov.Core().read_model(str(fp32_xml))
    if is_quantized(model):
        raise OtxliteError(f"--load-weights {fp32_xml}: this IR is already quantized (INT8). "
                           "Give the FP32 IR from `otxlite export`.")
    metadata = read_metadata(model, fp32_xml)
    dtype = model.input(0).get_element_type().to_dtype()

    def calibration_tensor(path: Path) -> np.ndarray:
        image = read_image(path)
        if image is None:
            raise OtxliteError(f"The calibration image {path} cannot be decoded. Remove or replace it.")
        if metadata.tiling is not None:  # the network mostly sees tiles: calibrate on each image's central one
            height, width = image.shape[:2]
            x0, y0, x1, y1 = min(tile_windows(width, height, replace(metadata.tiling, full_image=False)),
                                 key=lambda w: abs(w[0] + w[2] - width) + abs(w[1] + w[3] - height))
            image = image[y0:y1, x0:x1]
        return preprocess(image, metadata.input_size, dtype)

    quantized = nncf.quantize(model, nncf.Dataset(calibration, calibration_tensor),
                              preset=nncf.QuantizationPreset(settings.preset), subset_size=len(calibration),
                              ignored_scope=ignored_scope(model, metadata))
    bound = None
    if val_file is not None and settings.max_accuracy_drop is not None:
        bound = _keep_within_bound(quantized, model, val_file, settings)
        quantized = bound.model
    else:
        if settings.max_accuracy_drop is not None:
            err_console.print("[yellow]Note:[/] no --val-data-roots: the INT8 model's accuracy is not checked.")
        finalize(quantized)
    method = "nncf.quantize" + (f" + otxlite accuracy control (max drop {settings.max_accuracy_drop})" if bound else "")
    info = {"method": method, "preset": settings.preset, "subset_size": str(len(calibration)),
            "nncf_version": nncf.__version__}
    if bound is not None:
        info |= {"max_accuracy_drop": str(settings.max_accuracy_drop), "measured_drop": f"{bound.drop:.4f}",
                 "fp32_layers": str(bound.fp32_layers), "fp32_groups": " ".join(bound.fp32_groups)}
    write_metadata(quantized, metadata.quantized(info))
    return save_ir_atomic(quantized, output_xml), bound


def _keep_within_bound(quantized: Any, fp32: Any, ann_file: Path, settings: Int8Settings) -> BoundResult:
    """Run the accuracy control on the validation set (a prepared COCO file)."""
    from otxlite.runtime.evaluation import evaluate_predictor
    from otxlite.runtime.predictor import Predictor

    max_drop = float(settings.max_accuracy_drop)
    coco = json.loads(Path(ann_file).read_text())
    images, instances = len(coco["images"]), sum(not a.get("iscrowd") for a in coco["annotations"])
    if images < MIN_VALIDATION_IMAGES or instances < MIN_VALIDATION_INSTANCES:
        err_console.print(f"[yellow]Warning:[/] the accuracy bound is checked on {images} images with {instances} "
                          f"objects; below {MIN_VALIDATION_IMAGES} images or {MIN_VALIDATION_INSTANCES} objects a "
                          "0.01 mAP difference is mostly noise. Give a larger --val-data-roots for a bound that holds "
                          "on new data.")

    def score(model: Any) -> float:
        return float(evaluate_predictor(Predictor(model, hint="THROUGHPUT"), ann_file, show_progress=False)["mask_mAP"])

    result = quantize_within_bound(quantized, fp32, score(fp32), score, max_drop, finalize)
    if result.drop > max_drop:
        message = (f"INT8 cannot stay within --max-accuracy-drop {max_drop}: even with every quantized layer back in "
                   f"FP32 the mask mAP drops by {result.drop:.4f} ({result.fp32_score:.4f} -> {result.int8_score:.4f}) "
                   f"on {images} validation images.")
        if not settings.accept_accuracy_drop:
            raise OtxliteError(f"{message} Nothing was saved. Raise --max-accuracy-drop, give more calibration "
                               "images (--subset-size), or pass --accept-accuracy-drop to save it anyway.")
        err_console.print(f"[yellow]Warning:[/] {message} Saved anyway (--accept-accuracy-drop).")
    return result
