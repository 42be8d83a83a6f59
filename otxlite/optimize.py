"""``otxlite optimize``: NNCF post-training INT8 quantization of an exported IR.

Only the dense network is quantized: convolutions and fully connected layers with constant weights in
the backbone, neck, RPN and RoI heads. Everything else (box decoding, TopK, NMS, RoI feature
extraction, mask pasting, SOLOv2's dynamic kernels and matrix NMS) is in NNCF's ignored scope, so
detections are not degraded and statistics collection never runs on dynamic-shape post-processing.
The layers that turn features into scores and boxes (RPN objectness/regression, box classifier and
regressor, mask logits) stay FP32 too: they are tiny and most sensitive to rounding.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from otxlite.console import console, err_console
from otxlite.errors import OtxliteError
from otxlite.fileio import write_json_atomic
from otxlite.model_files import openvino_model
from otxlite.runs import run_folder

QUANTIZED_SCOPES = ("/backbone/", "/neck/", "/rpn_head/rpn_conv", "/bbox_head/shared_fcs", "/mask_head/convs",
                    "/mask_head/mask_feature_head", "/mask_head/cls_convs", "/mask_head/kernel_convs")
QUANTIZED_TYPES = {"Convolution", "GroupConvolution", "MatMul"}


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
    if model.has_rt_info(["otxlite", "optimization"]):
        return True
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ordered_ops())


def calibration_images(train_root: Path, subset_size: int, data_format: str | None, seed: int = 0) -> list[Path]:
    """Up to ``subset_size`` training image paths, chosen with a fixed seed."""
    from otxlite.data.formats import import_dataset

    dataset = import_dataset(train_root, data_format, "--train-data-roots")
    paths = sorted({str(item.media.path) for item in dataset.items if getattr(item.media, "path", None)})
    random.Random(seed).shuffle(paths)
    if len(paths) < subset_size:
        err_console.print(f"[yellow]Note:[/] --subset-size {subset_size}, but {train_root} has {len(paths)} images: "
                          f"calibrating on all {len(paths)}.")
    return [Path(p) for p in paths[:subset_size]]


def median_latency_ms(xml: Path, image: np.ndarray, runs: int = 10) -> float:
    """Median single-image latency (LATENCY hint), after one warm-up run."""
    from otxlite.inference.predictor import Predictor

    predictor = Predictor(xml, hint="LATENCY")
    request = predictor.compiled.create_infer_request()
    tensor = predictor.preprocess(image)
    request.infer({0: tensor})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: tensor})
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _validation_fn(metadata: Any, ann_file: Path, labels: list[str]) -> Any:
    """NNCF validation function: mask mAP of a compiled model on (image_id, image) items."""
    from otxlite.evaluation import ImagePrediction, encode_masks, evaluate_predictions
    from otxlite.inference.predictor import decode_outputs, preprocess

    def validate(compiled: Any, items: Any) -> float:
        request = compiled.create_infer_request()
        dtype = compiled.input(0).get_element_type().to_dtype()
        results = []
        for image_id, image in items:
            request.infer({0: preprocess(image, metadata.input_size, dtype)})
            outputs = {name: request.get_tensor(compiled.output(name)).data.copy()
                       for name in ("boxes", "labels", "masks")}
            pred = decode_outputs(outputs, metadata, *image.shape[:2])
            results.append(ImagePrediction(image_id, pred.boxes, pred.scores, pred.labels, encode_masks(pred.masks)))
        return float(evaluate_predictions(ann_file, results, labels)["mask_mAP"])

    return validate


def optimize(load_weights: Path, train_root: Path, val_root: Path | None = None, output: Path | None = None,
             subset_size: int = 300, preset: str = "mixed", max_accuracy_drop: float | None = None,
             data_format: str | None = None) -> OptimizeResult:
    """Quantize an IR (or export a ``weights.pth`` first) to INT8 with NNCF; see the module docstring."""
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.WARNING)  # keep NNCF's progress bars, drop its per-node INFO lines
    from otxlite.inference.images import read_image
    from otxlite.inference.metadata import read_metadata
    from otxlite.inference.predictor import preprocess

    if preset not in ("performance", "mixed"):
        raise OtxliteError(f"--preset {preset}: choose performance or mixed.")
    run_dir = run_folder(output, "optimize")
    fp32_xml = openvino_model(load_weights, run_dir)
    core = ov.Core()
    model = core.read_model(str(fp32_xml))
    metadata = read_metadata(model, fp32_xml)
    if is_quantized(model):
        raise OtxliteError(f"--load-weights {fp32_xml}: this IR is already quantized (INT8). "
                           "Give the FP32 IR from `otxlite export`.")
    paths = calibration_images(Path(train_root), subset_size, data_format)
    dtype = model.input(0).get_element_type().to_dtype()

    def calibration_tensor(path: Path) -> np.ndarray:
        image = read_image(path)
        if image is None:
            raise OtxliteError(f"The calibration image {path} cannot be decoded. Remove or replace it.")
        return preprocess(image, metadata.input_size, dtype)

    calibration = nncf.Dataset(paths, calibration_tensor)
    options = dict(preset=nncf.QuantizationPreset(preset), subset_size=len(paths), ignored_scope=ignored_scope(model))
    validation = None
    if val_root is not None:
        from otxlite.data.prepare import prepare_eval_data

        validation = prepare_eval_data(Path(val_root), metadata.labels, run_dir / "data", data_format,
                                       option="--val-data-roots")
    if max_accuracy_drop is not None and validation is not None:
        import json

        images = json.loads(validation.ann_file.read_text())["images"]
        items = [(info["id"], read_image(Path(info["file_name"]))) for info in images]
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, nncf.Dataset(items), _validation_fn(metadata, validation.ann_file, metadata.labels),
            max_drop=max_accuracy_drop, drop_type=nncf.DropType.ABSOLUTE, **options)
        method = f"nncf.quantize_with_accuracy_control (max drop {max_accuracy_drop})"
    else:
        if max_accuracy_drop is not None:
            err_console.print("[yellow]Note:[/] --max-accuracy-drop needs --val-data-roots; quantizing without "
                              "accuracy control.")
        quantized = nncf.quantize(model, calibration, **options)
        method = "nncf.quantize"
    compress_float_weights(quantized)
    quantized.set_rt_info(method, ["otxlite", "optimization", "method"])
    quantized.set_rt_info(preset, ["otxlite", "optimization", "preset"])
    quantized.set_rt_info(str(len(paths)), ["otxlite", "optimization", "subset_size"])
    quantized.set_rt_info(nncf.__version__, ["otxlite", "optimization", "nncf_version"])
    quantized.set_rt_info("INT8", ["otxlite", "precision"])
    xml = _save_model(quantized, run_dir / "openvino.xml")
    if (fp32_xml.parent / "label_schema.json").is_file() and fp32_xml.parent != run_dir:
        shutil.copy(fp32_xml.parent / "label_schema.json", run_dir / "label_schema.json")
    if validation is None:
        return OptimizeResult(xml, None, None)
    sample_image = read_image(paths[0])
    return OptimizeResult(xml, *_compare(fp32_xml, xml, Path(val_root), run_dir, data_format, sample_image))


def compress_float_weights(model: Any, min_size: int = 1024) -> int:
    """Store the FP32 weights NNCF left unquantized (e.g. EfficientNet's squeeze-excitation convolutions,
    which NNCF keeps out of INT8 on purpose) as FP16 followed by a Convert, as OpenVINO's own FP16
    compression does. Returns the number of weights compressed."""
    import openvino as ov
    import openvino.opset13 as ops

    weight_users = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_output_element_type(0) != ov.Type.f32:
            continue
        targets = list(op.output(0).get_target_inputs())
        if not targets or any(t.get_node().get_type_name() not in weight_users or t.get_index() != 1
                              for t in targets):
            continue
        data = op.get_data()
        if data.size < min_size:
            continue
        half = ops.convert(ops.constant(data.astype(np.float16)), ov.Type.f32)
        for target in targets:
            target.replace_source_output(half.output(0))
        count += 1
    return count


def _save_model(model: Any, xml: Path) -> Path:
    """Save an IR pair so that neither file is ever half-written at its final name."""
    import openvino as ov

    tmp = xml.with_name(f".{xml.stem}.tmp.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    return xml


def _compare(fp32_xml: Path, int8_xml: Path, val_root: Path, run_dir: Path, data_format: str | None,
             sample_image: np.ndarray) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Evaluate both IRs; write the INT8 ``performance.json`` (with the FP32 vs INT8 rows under
    ``fp32_vs_int8``); return it and the rows: mask/bbox mAP, .bin size, latency."""
    from otxlite.evaluate import evaluate_ir
    from otxlite.evaluation import performance_report

    rows: dict[str, dict[str, float]] = {}
    reports = {}
    for name, xml in (("FP32", fp32_xml), ("INT8", int8_xml)):
        console.print(f"Evaluating the {name} model")
        metrics, threshold = evaluate_ir(xml, val_root, run_dir / "eval", data_format)
        reports[name] = performance_report(metrics, threshold, xml.name)
        rows[name] = {"mask_mAP": reports[name]["mask_mAP"], "bbox_mAP": reports[name]["bbox_mAP"],
                      "bin_MB": xml.with_suffix(".bin").stat().st_size / 1e6,
                      "latency_ms": median_latency_ms(xml, sample_image)}
    shutil.rmtree(run_dir / "eval", ignore_errors=True)
    write_json_atomic(run_dir / "performance.json", reports["INT8"] | {"fp32_vs_int8": rows})
    return reports["INT8"], rows
