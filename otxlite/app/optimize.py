"""``otxlite optimize``: NNCF post-training INT8 quantization of an exported IR.

Only the dense network is quantized: convolutions and fully connected layers with constant weights in
the backbone, neck, RPN and RoI heads. Everything else (box decoding, TopK, NMS, RoI feature
extraction, mask pasting, SOLOv2's and RTMDet-Ins's dynamic kernels, matrix NMS, YOLACT's fast NMS and
prototype products) is in NNCF's ignored scope, so
detections are not degraded and statistics collection never runs on dynamic-shape post-processing.
The layers that turn features into scores and boxes (RPN objectness/regression, box classifier and
regressor, mask logits, RTMDet-Ins's score/box/kernel outputs and mask projection, YOLACT's score/box/
coefficient convs and prototype output) stay FP32 too: they
are tiny and most sensitive to rounding.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from otxlite.export.accuracy_control import BoundResult, quantize_within_bound
from otxlite.core.console import console, err_console
from otxlite.core.artifacts import is_optimized
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import save_ir_atomic, write_json_atomic
from otxlite.export.fp16_weights import compress_float_weights
from otxlite.app.export import openvino_model
from otxlite.core.model_files import model_kind
from otxlite.core.runs import run_folder
from otxlite.core.templates import optimization_settings
from otxlite.core.tiling import tile_windows
from otxlite.data.formats import DataOptions

QUANTIZED_SCOPES = ("/backbone/", "/neck/", "/rpn_head/rpn_conv", "/bbox_head/shared_fcs", "/mask_head/convs",
                    "/mask_head/mask_feature_head", "/mask_head/cls_convs", "/mask_head/kernel_convs",
                    # RTMDet-Ins: the shared conv towers and the mask feature convs (not their 1x1 outputs)
                    "/bbox_head/cls_convs", "/bbox_head/reg_convs", "/bbox_head/kernel_convs",
                    "/bbox_head/mask_head/fusion_conv", "/bbox_head/mask_head/stacked_convs",
                    # YOLACT: the head's shared conv and the protonet's 3x3 convs (not its 1x1 prototype output)
                    "/bbox_head/head_convs", "/protonet/protonet.0/", "/protonet/protonet.2/",
                    "/protonet/protonet.4/", "/protonet/protonet.8/")
QUANTIZED_TYPES = {"Convolution", "GroupConvolution", "MatMul"}
MIN_VALIDATION_IMAGES, MIN_VALIDATION_INSTANCES = 20, 50  # fewer: the accuracy bound is mostly noise


@dataclass
class OptimizeResult:
    """The INT8 IR and, with validation data, FP32 vs INT8 measurements."""

    xml: Path
    performance: dict[str, Any] | None
    comparison: dict[str, dict[str, float]] | None


def _has_constant_weights(op: Any) -> bool:
    node = op.input_value(1).get_node()
    while node.get_type_name() in ("Convert", "Reshape", "Unsqueeze"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def quantizable(op: Any) -> bool:
    """True for the dense layers otxlite quantizes (see the module docstring)."""
    return (op.get_type_name() in QUANTIZED_TYPES and op.get_friendly_name().startswith(QUANTIZED_SCOPES)
            and _has_constant_weights(op))


def ignored_scope(model: Any) -> Any:
    """NNCF ignored scope: every operation that is not a quantizable dense layer."""
    import nncf

    names = [op.get_friendly_name() for op in model.get_ordered_ops() if not quantizable(op)]
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


def median_latency_ms(xml: Path, image: np.ndarray, runs: int = 10) -> float:
    """Median single-image latency (LATENCY hint), after one warm-up run."""
    from otxlite.runtime.predictor import Predictor

    predictor = Predictor(xml, hint="LATENCY")
    tensor = predictor.preprocess(image)
    predictor.pool.infer(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.pool.infer(tensor)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def optimize(load_weights: Path, train_root: Path, val_root: Path | None = None, output: Path | None = None,
             subset_size: int | None = None, preset: str | None = None, max_accuracy_drop: float | None = None,
             data_options: DataOptions = DataOptions(), accept_accuracy_drop: bool = False) -> OptimizeResult:
    """Quantize an IR (or export a ``weights.pth`` first) to INT8 with NNCF; see the module docstring.

    ``subset_size``, ``preset`` and ``max_accuracy_drop`` left ``None`` come from the model's template
    (its ``optimization`` hyper-parameters; ``otxlite.core.templates.optimization_settings``).

    With ``val_root`` and ``max_accuracy_drop``, the saved model's mask mAP (measured as ``otxlite eval``
    measures it) is kept within ``max_accuracy_drop`` of the FP32 IR's by putting layer groups back into
    FP32 (``otxlite.export.accuracy_control``); if even that fails, nothing is saved unless ``accept_accuracy_drop``.
    """
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)  # keep NNCF's progress bars, drop its per-node INFO lines
    from otxlite.core.images import read_image
    from otxlite.core.artifacts import read_metadata, write_metadata
    from otxlite.runtime.predictor import preprocess

    if preset is not None and preset not in ("performance", "mixed"):
        raise OtxliteError(f"--preset {preset}: choose performance or mixed.")
    from otxlite.core.artifacts import model_labels_and_template
    from otxlite.data.prepare import convert_eval_data

    model_kind(load_weights)  # a missing or cut-short model is refused before the run folder is made
    labels, template_id = model_labels_and_template(Path(load_weights))
    settings = optimization_settings(template_id)
    subset_size = subset_size or settings["subset_size"]
    paths = calibration_images(Path(train_root), subset_size, data_options)  # the data is checked before heavy work
    validation = None if val_root is None else convert_eval_data(Path(val_root), labels, data_options,
                                                                 option="--val-data-roots")
    run_dir = run_folder(output, "optimize")
    val_file = None if validation is None else validation.write(run_dir / "data", "val").ann_file
    fp32_xml = openvino_model(load_weights, run_dir)
    core = ov.Core()
    model = core.read_model(str(fp32_xml))
    metadata = read_metadata(model, fp32_xml)
    if is_quantized(model):
        raise OtxliteError(f"--load-weights {fp32_xml}: this IR is already quantized (INT8). "
                           "Give the FP32 IR from `otxlite export`.")
    preset = preset or settings["preset"]
    max_accuracy_drop = settings["max_accuracy_drop"] if max_accuracy_drop is None else max_accuracy_drop
    console.print(f"INT8 settings: --subset-size {subset_size}, --preset {preset}"
                  f"{f', --max-accuracy-drop {max_accuracy_drop}' if val_root is not None else ''} "
                  f"(unset options come from the template {metadata.template_id or '(unknown)'})")
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

    calibration = nncf.Dataset(paths, calibration_tensor)
    quantized = nncf.quantize(model, calibration, preset=nncf.QuantizationPreset(preset), subset_size=len(paths),
                              ignored_scope=ignored_scope(model))
    bound = None
    if val_root is not None and max_accuracy_drop is not None:
        bound = _keep_within_bound(quantized, model, val_file, max_accuracy_drop, accept_accuracy_drop)
        quantized = bound.model
    else:
        if max_accuracy_drop is not None and val_root is None:
            err_console.print("[yellow]Note:[/] no --val-data-roots: the INT8 model's accuracy is not checked.")
        _finalize(quantized)
    method = "nncf.quantize" + (f" + otxlite accuracy control (max drop {max_accuracy_drop})" if bound else "")
    info = {"method": method, "preset": preset, "subset_size": str(len(paths)), "nncf_version": nncf.__version__}
    if bound is not None:
        info |= {"max_accuracy_drop": str(max_accuracy_drop), "measured_drop": f"{bound.drop:.4f}",
                 "fp32_layers": str(bound.fp32_layers), "fp32_groups": " ".join(bound.fp32_groups)}
    write_metadata(quantized, metadata.quantized(info))
    xml = save_ir_atomic(quantized, run_dir / "openvino.xml")
    if (fp32_xml.parent / "label_schema.json").is_file() and fp32_xml.parent != run_dir:
        shutil.copy(fp32_xml.parent / "label_schema.json", run_dir / "label_schema.json")
    if val_file is None:
        return OptimizeResult(xml, None, None)
    sample_image = read_image(paths[0])
    extra = {"fp32_layers": bound.fp32_layers, "fp32_groups": bound.fp32_groups} if bound else {}
    return OptimizeResult(xml, *_compare(fp32_xml, xml, val_file, run_dir, sample_image, extra))


def _finalize(model: Any) -> Any:
    """What happens to a quantized model before it is saved (scored candidates must be the saved model)."""
    compress_float_weights(model)
    return model


def _keep_within_bound(quantized: Any, fp32: Any, ann_file: Path, max_drop: float, accept: bool) -> BoundResult:
    """Run the accuracy control of ``otxlite.export.accuracy_control`` on the validation set (a prepared COCO file)."""
    import json

    from otxlite.app.evaluate import evaluate_predictor
    from otxlite.runtime.predictor import Predictor

    coco = json.loads(Path(ann_file).read_text())
    images, instances = len(coco["images"]), sum(not a.get("iscrowd") for a in coco["annotations"])
    if images < MIN_VALIDATION_IMAGES or instances < MIN_VALIDATION_INSTANCES:
        err_console.print(f"[yellow]Warning:[/] the accuracy bound is checked on {images} images with {instances} "
                          f"objects; below {MIN_VALIDATION_IMAGES} images or {MIN_VALIDATION_INSTANCES} objects a "
                          "0.01 mAP difference is mostly noise. Give a larger --val-data-roots for a bound that holds "
                          "on new data.")

    def score(model: Any) -> float:
        return float(evaluate_predictor(Predictor(model, hint="THROUGHPUT"), ann_file, show_progress=False)["mask_mAP"])

    result = quantize_within_bound(quantized, fp32, score(fp32), score, max_drop, _finalize)
    if result.drop > max_drop:
        message = (f"INT8 cannot stay within --max-accuracy-drop {max_drop}: even with every quantized layer back in "
                   f"FP32 the mask mAP drops by {result.drop:.4f} ({result.fp32_score:.4f} -> {result.int8_score:.4f}) "
                   f"on {images} validation images.")
        if not accept:
            raise OtxliteError(f"{message} Nothing was saved. Raise --max-accuracy-drop, give more calibration "
                               "images (--subset-size), or pass --accept-accuracy-drop to save it anyway.")
        err_console.print(f"[yellow]Warning:[/] {message} Saved anyway (--accept-accuracy-drop).")
    return result


def _compare(fp32_xml: Path, int8_xml: Path, ann_file: Path, run_dir: Path, sample_image: np.ndarray,
             extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate both saved IRs as ``otxlite eval`` does; write the INT8 ``performance.json`` (with the FP32 vs
    INT8 rows under ``fp32_vs_int8``); return it and the rows: mask/bbox mAP, .bin size, latency, per-class
    mask mAP, and ``extra`` (layers kept in FP32)."""
    from otxlite.core.coco_metrics import performance_report
    from otxlite.app.evaluate import evaluate_ir

    rows: dict[str, Any] = {}
    reports = {}
    for name, xml in (("FP32", fp32_xml), ("INT8", int8_xml)):
        console.print(f"Evaluating the saved {name} model")
        metrics, threshold = evaluate_ir(xml, ann_file, report_dir=run_dir / "report" if name == "INT8" else None)
        reports[name] = performance_report(metrics, threshold, xml.name)
        rows[name] = {"mask_mAP": reports[name]["mask_mAP"], "bbox_mAP": reports[name]["bbox_mAP"],
                      "bin_MB": xml.with_suffix(".bin").stat().st_size / 1e6,
                      "latency_ms": median_latency_ms(xml, sample_image)}
    rows["per_class_mask_mAP"] = {
        label: {"FP32": value["mask_mAP"], "INT8": reports["INT8"]["per_class"][label]["mask_mAP"]}
        for label, value in reports["FP32"]["per_class"].items()}
    rows |= extra
    write_json_atomic(run_dir / "performance.json", reports["INT8"] | {"fp32_vs_int8": rows})
    return reports["INT8"], rows
