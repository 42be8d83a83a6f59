"""``otxlite optimize``: NNCF post-training INT8 quantization of an exported IR (see
:mod:`otxlite.quantization.int8` for what is quantized), its accuracy bound and the FP32 vs INT8 comparison."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from otxlite.core.artifacts import model_record
from otxlite.core.console import console
from otxlite.core.fileio import write_json_atomic
from otxlite.core.model_files import model_kind
from otxlite.core.runs import run_folder
from otxlite.data.formats import DataOptions
from otxlite.export.pipeline import openvino_model
from otxlite.quantization.int8 import calibration_images, int8_settings, quantize_ir


@dataclass
class OptimizeResult:
    """The INT8 IR and, with validation data, FP32 vs INT8 measurements."""

    xml: Path
    performance: dict[str, Any] | None
    comparison: dict[str, dict[str, float]] | None


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
    """Quantize an IR (or export a ``weights.pth`` first) to INT8 with NNCF.

    ``subset_size``, ``preset`` and ``max_accuracy_drop`` left ``None`` come from the model record's
    ``optimization_settings`` (the template's ``optimization`` hyper-parameters at training).

    With ``val_root`` and ``max_accuracy_drop``, the saved model's mask mAP (measured as ``otxlite eval``
    measures it) is kept within ``max_accuracy_drop`` of the FP32 IR's; if even that fails, nothing is saved
    unless ``accept_accuracy_drop``.
    """
    from otxlite.core.images import read_image
    from otxlite.data.prepare import convert_eval_data

    logging.getLogger("nncf").setLevel(logging.WARNING)  # keep NNCF's progress bars, drop its per-node INFO lines
    model_kind(load_weights)  # a missing or cut-short model is refused before the run folder is made
    record = model_record(Path(load_weights))
    settings = int8_settings(record, subset_size, preset, max_accuracy_drop, accept_accuracy_drop)
    paths = calibration_images(Path(train_root), settings.subset_size, data_options)  # data checked before heavy work
    validation = None if val_root is None else convert_eval_data(Path(val_root), record.labels, data_options,
                                                                 option="--val-data-roots")
    run_dir = run_folder(output, "optimize")
    val_file = None if validation is None else validation.write(run_dir / "data", "val").ann_file
    fp32_xml = openvino_model(load_weights, run_dir)
    console.print(f"INT8 settings: --subset-size {settings.subset_size}, --preset {settings.preset}"
                  f"{f', --max-accuracy-drop {settings.max_accuracy_drop}' if val_root is not None else ''} "
                  f"(unset options come from the model's template {record.template_id or '(unknown)'})")
    xml, bound = quantize_ir(fp32_xml, paths, settings, run_dir / "openvino.xml", val_file)
    if (fp32_xml.parent / "label_schema.json").is_file() and fp32_xml.parent != run_dir:
        shutil.copy(fp32_xml.parent / "label_schema.json", run_dir / "label_schema.json")
    if val_file is None:
        return OptimizeResult(xml, None, None)
    sample_image = read_image(paths[0])
    extra = {"fp32_layers": bound.fp32_layers, "fp32_groups": bound.fp32_groups} if bound else {}
    return OptimizeResult(xml, *_compare(fp32_xml, xml, val_file, run_dir, sample_image, extra))


def _compare(fp32_xml: Path, int8_xml: Path, ann_file: Path, run_dir: Path, sample_image: np.ndarray,
             extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate both saved IRs as ``otxlite eval`` does; write the INT8 ``performance.json`` (with the FP32 vs
    INT8 rows under ``fp32_vs_int8``); return it and the rows: mask/bbox mAP, .bin size, latency, per-class
    mask mAP, and ``extra`` (layers kept in FP32)."""
    from otxlite.core.coco_metrics import performance_report
    from otxlite.runtime.evaluation import evaluate_ir

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
