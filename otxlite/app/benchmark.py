"""``otxlite benchmark``: accuracy, latency and throughput of each deployable form of a model, on the user's
data and this machine.

Forms measured: PyTorch (when a ``weights.pth`` is given), IR FP32 (given, or exported), IR FP16 (exported,
or the FP32 IR's dense weights stored in FP16), INT8 (given, or made by ``otxlite optimize`` when
``--train-data-roots`` is given to calibrate on). Accuracy is ``otxlite eval``'s own code. Latency: one image
at a time (OpenVINO's LATENCY hint), pre- and post-processing included, p50/p90 over the test images after
a warm-up. Throughput: images/s with the request pool kept busy (THROUGHPUT hint), pre/post included.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from otxlite.core.console import console
from otxlite.core.fileio import save_ir_atomic, write_json_atomic
from otxlite.core.images import read_image
from otxlite.core.measure import cpu_model_and_flags, spread, time_calls
from otxlite.core.model_files import ModelKind, model_kind
from otxlite.core.runs import run_folder
from otxlite.data.formats import DataOptions

LATENCY_IMAGES = 20  # at most this many test images are timed, each once after one warm-up run
THROUGHPUT_IMAGES = 40  # images pushed through the request pool (the test images, repeated)


def model_forms(load_weights: Path, run_dir: Path, train_root: Path | None,
                data_options: DataOptions) -> dict[str, Path]:
    """{form: model file} for every form that is given or can be made from ``load_weights``."""
    import openvino as ov

    from otxlite.core.artifacts import is_optimized, read_metadata, write_metadata
    from otxlite.export.fp16_weights import compress_float_weights

    forms: dict[str, Path] = {}
    if model_kind(load_weights) is ModelKind.PYTORCH:
        from otxlite.export.pipeline import export_openvino

        forms["PyTorch"] = Path(load_weights)
        console.print("Exporting the FP32 and FP16 IRs")
        forms["IR FP32"] = export_openvino(Path(load_weights), run_dir / "fp32")
        forms["IR FP16"] = export_openvino(Path(load_weights), run_dir / "fp16", half_precision=True)
    else:
        model = ov.Core().read_model(str(load_weights))
        metadata = read_metadata(model, Path(load_weights))
        if is_optimized(model) or metadata.precision != "FP32":
            return {f"IR {metadata.precision}": Path(load_weights)}
        forms["IR FP32"] = Path(load_weights)
        compress_float_weights(model)
        write_metadata(model, replace(metadata, precision="FP16"))
        forms["IR FP16"] = save_ir_atomic(model, run_dir / "fp16" / "openvino.xml")
    if train_root is not None:
        from otxlite.core.artifacts import model_record
        from otxlite.quantization.int8 import calibration_images, int8_settings, quantize_ir

        console.print("Quantizing to INT8 (calibrating on --train-data-roots)")
        settings = int8_settings(model_record(forms["IR FP32"]))
        calibration = calibration_images(Path(train_root), settings.subset_size, data_options)
        forms["INT8"], _ = quantize_ir(forms["IR FP32"], calibration, settings, run_dir / "int8" / "openvino.xml")
    return forms


def _measure_ir(xml: Path, ann_file: Path, run_dir: Path, images: list[Any]) -> dict[str, Any]:
    from otxlite.runtime.evaluation import evaluate_ir
    from otxlite.runtime.predictor import Predictor

    metrics, _ = evaluate_ir(xml, ann_file)
    latency = _latency(Predictor(xml, hint="LATENCY").predict, images)
    pool = Predictor(xml, hint="THROUGHPUT")
    stream = [(i, images[i % len(images)]) for i in range(max(THROUGHPUT_IMAGES, 2 * pool.pool.size))]
    pool.predict_async(stream[:pool.pool.size], lambda *_: None)  # warm-up: every request once
    start = time.perf_counter()
    pool.predict_async(stream, lambda *_: None)
    images_per_s = len(stream) / (time.perf_counter() - start)
    return dict(metrics=metrics, latency_ms=latency, images_per_s=round(images_per_s, 2),
                size_MB=round(xml.with_suffix(".bin").stat().st_size / 1e6, 1))


def _measure_pytorch(weights: Path, ann_file: Path, run_dir: Path, images: list[Any]) -> dict[str, Any]:
    from otxlite.training.evaluate import evaluate_weights
    from otxlite.training.inference import pytorch_detector

    metrics, _ = evaluate_weights(weights, ann_file, run_dir)
    latency = _latency(pytorch_detector(weights), images)
    return dict(metrics=metrics, latency_ms=latency, images_per_s=round(1000 / latency["median"], 2),  # one by one
                size_MB=round(weights.stat().st_size / 1e6, 1))


def _latency(predict: Any, images: list[Any]) -> dict[str, Any]:
    """Milliseconds per image of ``predict`` (p10/median/p90): one warm-up run, then each test image once."""
    predict(images[0])
    return spread([time_calls(lambda image=image: predict(image), 0, 1)[0] for image in images[:LATENCY_IMAGES]])


def benchmark(load_weights: Path, test_root: Path, output: Path | None = None, train_root: Path | None = None,
              data_options: DataOptions = DataOptions()) -> tuple[dict[str, Any], Path]:
    """Measure every form of ``load_weights`` on ``test_root``; returns the report and ``benchmark.json``."""
    from otxlite.core.artifacts import model_record
    from otxlite.data.formats import check_folder
    from otxlite.data.prepare import convert_eval_data

    check_folder(Path(test_root), "--test-data-roots")
    if train_root is not None:
        check_folder(Path(train_root), "--train-data-roots")
    if model_kind(Path(load_weights)) is ModelKind.PYTORCH:  # PyTorch is measured where the IRs run: on the CPU
        from otxlite.training.device import use_device

        use_device("cpu")
    labels = model_record(Path(load_weights)).labels
    converted = convert_eval_data(Path(test_root), labels, data_options)  # before anything is exported or quantized
    run_dir = run_folder(output, "benchmark")
    subset = converted.write(run_dir / "data")
    forms = model_forms(Path(load_weights), run_dir, train_root, data_options)
    images = [read_image(Path(info["file_name"])) for info in json.loads(subset.ann_file.read_text())["images"]]
    images = [image for image in images if image is not None]
    cpu, flags = cpu_model_and_flags()
    report: dict[str, Any] = {
        "machine": {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "flags": [k for k, v in flags.items() if v]},
        "test_images": len(images), "forms": {},
    }
    for name, path in forms.items():
        console.print(f"Measuring {name}")
        measure = _measure_pytorch if name == "PyTorch" else _measure_ir
        result = measure(path, subset.ann_file, run_dir / "eval" / name.replace(" ", "_"), images)
        report["forms"][name] = {"model": str(path), "mask_mAP": round(result["metrics"]["mask_mAP"], 5),
                                 "bbox_mAP": round(result["metrics"]["bbox_mAP"], 5),
                                 **{k: result[k] for k in ("latency_ms", "images_per_s", "size_MB")}}
    return report, write_json_atomic(run_dir / "benchmark.json", report)

