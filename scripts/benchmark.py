#!/usr/bin/env python
r"""Inference speed and memory of otxlite's templates: PyTorch eager vs OpenVINO FP32 vs INT8, in one run.

For each template (``--templates``, default all) at each input size (``--sizes``, default: the
template's own and 320 px), on one machine in one run, every phase in its own fresh Python process
(``--worker PHASE``, one JSON line), so the peak resident memory (``ru_maxrss``) of each phase is its own:

1. ``pytorch``: build the runner config with the 3 labels of the generated sample dataset, build the
   model (``MODELS.build``, random init, no training), save it as an otxlite ``weights.pth``; time
   ``model.test_step`` (normalization, forward, NMS, masks pasted at the input size) at batch 1
   under ``torch.no_grad()`` with torch threads = usable cores; count the model's multiply-adds
   (``otxlite.training.model_stats``'s counter, on this model at this size, the box head on as
   many proposals as the RPN returned).
2. ``export``: ``otxlite.export.export_openvino`` -> FP32 IR.
3. ``int8``: ``otxlite.app.optimize.optimize`` (NNCF, calibrated on the sample dataset, ``--subset-size``).
4. ``openvino``: one process per IR x precision x hint. LATENCY hint: synchronous ``infer`` of the
   preprocessed tensor (normalization and the IR's post-processing included, the host-side mask
   pasting not: it is timed separately as ``decode_ms``), then an optional profiling pass
   (``PERF_COUNT``: time per layer type, per model part and per execution precision).
   THROUGHPUT hint: OpenVINO's optimal number of infer requests kept busy
   for ``--throughput-seconds`` (at least 4 rounds and 10 images); images/s.
   OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``, as otxlite's predictor does: on CPUs with
   bf16 units (AVX-512 BF16, AMX) OpenVINO's default would run an FP32 IR in bf16.
   ``--default-precision`` also measures that default (a second table).

Latencies: ``--warmup`` untimed runs, then ``--repeats`` timed ones; the median and the 10th-90th
percentile are reported. Throughput: overall images/s, and the spread of five equal-count slices.

Effective GFLOP/s = 2 x multiply-adds of the dense network / median latency, against the machine's
peak: an OpenVINO FP32 2048x2048 MatMul (``openvino.opset13``, LATENCY hint, 2 x 2048^3 FLOPs per
run). The template's ``gigaflops`` counts one multiply-add as one FLOP (fvcore/OTX convention), hence
the factor 2. The count leaves out post-processing (NMS, RoIAlign, mask pasting), which the
latency includes, so the percentage of peak is a lower bound on the dense layers' efficiency.

The weights are random: post-processing works on random proposals. The number of RoIs each head
sees is capped by the test config (RPN ``max_per_img`` proposals into the box head, ``rcnn.max_per_img``
detections into the mask head) and, random scores passing the score threshold, the mask head runs on
the cap, the worst case of a trained model. The counts actually seen are in the JSON
(``proposals``, ``detections``).

Also (each optional): ``otxlite --help`` start-up time (median of 5 runs), the import of a
10,000-image COCO file (``scripts/benchmark_import.py``) and training images/s of otxlite vs plain
mmengine (``scripts/benchmark_training.py``, one template, small size, 16 images, batch 2).

Quick subset (one template, 320 px; about 5-10 minutes on 2 cores)::

    .venv/bin/python scripts/benchmark.py --templates MaskRCNN-EfficientNetB2B --sizes 320 --repeats 5 \
        --skip-training --skip-import

Smoke run (about 3-5 minutes)::

    .venv/bin/python scripts/benchmark.py --templates MaskRCNN-ResNet18 --sizes 192 --repeats 3 \
        --skip-training --skip-import --output /tmp/bench/results.json

Full set (8 templates x 2 sizes, plus start-up, import and training; hours on a 2-core CPU,
run it on an otherwise idle machine)::

    .venv/bin/python scripts/benchmark.py

Writes ``benchmarks/results.json`` (atomically, after every model) and ``benchmarks/results.md``
(the Markdown table, also printed), headed by the machine: CPU, cores, ISA flags, versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from otxlite.core.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from otxlite.core.measure import machine_info, spread, time_calls, usable_cores  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from benchmark_peers import LOADS, PEERS  # noqa: E402

MARKER = "BENCHMARK_RESULT "
DEFAULT_OUTPUT = REPO / "benchmarks" / "results.json"
DEFAULT_DATA = Path.home() / ".cache" / "otxlite" / "benchmark"
SAMPLE_IMAGES = dict(num_train=24, num_val=2, size=256)
MATMUL_N = 2048
BUSY_LIMIT = 0.15  # other processes' share of the CPUs above which the report warns
TARGETS = dict(openvino_vs_pytorch=2.0, int8_vs_fp32=1.3, training_overhead=1.05, help_s=1.0, import_s=30.0)


# --------------------------------------------------------------------------------------------
# Small measuring helpers (shared by the phases)
# --------------------------------------------------------------------------------------------

def maxrss_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def others_busy(seconds: float = 0.5) -> float | None:
    """Share of all CPU time used over ``seconds`` (from ``/proc/stat``). Called between phases, while this
    benchmark itself is idle, it measures how busy other processes keep the machine."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def compile_config(hint: str, precision: str, profile: bool = False) -> dict[str, str]:
    """OpenVINO CPU properties: ``precision`` is ``f32`` (pinned) or ``default`` (OpenVINO's choice)."""
    config = {"PERFORMANCE_HINT": hint}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    if profile:
        config["PERF_COUNT"] = "YES"
    return config


# --------------------------------------------------------------------------------------------
# Phases: each runs in its own process (``--worker PHASE SPEC``) and returns a JSON-able dict.
# --------------------------------------------------------------------------------------------

def phase_peak(spec: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of an OpenVINO n x n MatMul (2 n^3 FLOPs), LATENCY hint, per precision."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    n = int(spec["n"])
    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    model = ov.Model([ops.matmul(a, ops.constant(rng.standard_normal((n, n), dtype=np.float32)), False, False)],
                     [a], "matmul")
    core = ov.Core()
    default = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    result: dict[str, Any] = dict(n=n, default_precision=default.get_property("INFERENCE_PRECISION_HINT").to_string(),
                                  threads=int(default.get_property("INFERENCE_NUM_THREADS")))
    del default
    for precision in spec["precisions"]:
        compiled = core.compile_model(model, "CPU", compile_config("LATENCY", precision))
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(rng.standard_normal((n, n), dtype=np.float32)))
        latency = spread(time_calls(request.infer, spec["warmup"], spec["repeats"]))
        result[precision] = dict(latency_ms=latency, gflops=round(2 * n ** 3 / latency["median"] / 1e6, 1))
    return result


def phase_pytorch(spec: dict[str, Any]) -> dict[str, Any]:
    """Build a random-weight model, save it as ``weights.pth``, time eager CPU inference, count MACs."""
    import cv2
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.utils import import_modules_from_strings

    from otxlite.core.artifacts import save_weights
    from otxlite.training.config import build_runner_config, model_record
    from otxlite.core.templates import apply_overrides, load_template

    torch.set_num_threads(usable_cores())
    template = load_template(spec["template"])
    size = int(spec["size"])
    hyper = apply_overrides(template.hyper_parameters, [f"data.input_size=[{size},{size}]"],
                            template.family.input_size_multiple)
    cfg = build_runner_config(template, hyper, spec["labels"], Path(spec["train_ann"]), None,
                              Path(spec["work_dir"]), num_train_images=1, pretrained_start="random")
    if "score_thr" in cfg.model.test_cfg and "rcnn" not in cfg.model.test_cfg:  # single-stage (RTMDet-Ins)
        cfg.model.test_cfg.score_thr = 0.0  # random scores sit under 0.05: keep the cap's worth of candidates
    register_all_modules()
    import_modules_from_strings(cfg.custom_imports["imports"])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    save_weights(Path(spec["weights"]), model.state_dict(), cfg.to_dict(),
                 model_record(template, hyper, spec["labels"], cfg.model, None))

    image = torch.from_numpy(cv2.resize(cv2.imread(spec["image"]), (size, size)).transpose(2, 0, 1).copy())

    def infer() -> Any:
        sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0)))
        with torch.no_grad():
            return model.test_step(dict(inputs=[image], data_samples=[sample]))

    counts = _count_rois(model, infer)
    latency = spread(time_calls(infer, spec["warmup"], spec["repeats"]))
    peak_rss = maxrss_mib()  # before the MAC count, whose tracing allocates more than inference does
    from otxlite.training.model_stats import count_flops

    if "proposals" in counts:  # count the box head on the proposals the RPN returned, not on its cap
        model.test_cfg.rpn.max_per_img = counts["proposals"]
    start = time.perf_counter()
    macs, _ = count_flops(model, *_padded(model, size))
    return dict(latency_ms=latency, torch_threads=torch.get_num_threads(), gmacs=round(macs / 1e9, 3),
                mac_count_s=round(time.perf_counter() - start, 1), peak_rss_mib=peak_rss, **counts)


def _padded(model: Any, size: int) -> tuple[int, int]:
    divisor = int(getattr(model.data_preprocessor, "pad_size_divisor", 1) or 1)
    side = -(-size // divisor) * divisor
    return side, side


def _count_rois(model: Any, infer: Callable[[], Any]) -> dict[str, int]:
    """One untimed inference: RPN proposals that reach the box head (two-stage models) and final detections."""
    counts: dict[str, int] = {}
    roi_head = getattr(model, "roi_head", None)
    if roi_head is not None:
        predict = roi_head.predict

        def counting(x: Any, rpn_results_list: Any, *args: Any, **kwargs: Any) -> Any:
            counts["proposals"] = len(rpn_results_list[0])
            return predict(x, rpn_results_list, *args, **kwargs)

        roi_head.predict = counting
    counts["detections"] = len(infer()[0].pred_instances)
    if roi_head is not None:
        roi_head.predict = predict
        counts["proposal_cap"] = int(model.test_cfg.rpn.max_per_img)
        counts["detection_cap"] = int(model.test_cfg.rcnn.max_per_img)
    return counts


def phase_export(spec: dict[str, Any]) -> dict[str, Any]:
    """``export_openvino`` of the phase-1 weights to an FP32 IR."""
    from otxlite.export.pipeline import export_openvino

    start = time.perf_counter()
    xml = export_openvino(Path(spec["weights"]), Path(spec["output"]))
    return dict(seconds=round(time.perf_counter() - start, 1), xml=str(xml),
                bin_mb=round(xml.with_suffix(".bin").stat().st_size / 1e6, 2))


def phase_int8(spec: dict[str, Any]) -> dict[str, Any]:
    """``otxlite.app.optimize.optimize`` of the FP32 IR, calibrated on the sample dataset."""
    import openvino as ov

    from otxlite.app.optimize import optimize

    start = time.perf_counter()
    result = optimize(Path(spec["xml"]), Path(spec["dataset"]), output=Path(spec["output"]),
                      subset_size=spec["subset_size"], preset=spec["preset"])
    seconds = time.perf_counter() - start
    ops = ov.Core().read_model(str(result.xml)).get_ordered_ops()
    return dict(seconds=round(seconds, 1), xml=str(result.xml),
                bin_mb=round(result.xml.with_suffix(".bin").stat().st_size / 1e6, 2),
                fake_quantize=sum(op.get_type_name() == "FakeQuantize" for op in ops))


def phase_openvino(spec: dict[str, Any]) -> dict[str, Any]:
    """Latency (LATENCY hint, sync) or throughput (THROUGHPUT hint, async queue) of one IR."""
    import cv2
    import openvino as ov

    from otxlite.core.artifacts import read_metadata
    from otxlite.runtime.predictor import Predictor, decode_outputs, mask_output, preprocess, request_outputs

    xml, hint = spec["xml"], spec["hint"]
    core = ov.Core()
    model = core.read_model(xml)
    metadata = read_metadata(model, Path(xml))
    start = time.perf_counter()
    compiled = core.compile_model(model, "CPU", compile_config(hint, spec["precision"]))
    result: dict[str, Any] = dict(
        compile_s=round(time.perf_counter() - start, 2),
        inference_precision=compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        streams=int(compiled.get_property("NUM_STREAMS")), threads=int(compiled.get_property("INFERENCE_NUM_THREADS")))
    tensor = preprocess(cv2.imread(spec["image"]), metadata.input_size, compiled.input(0).get_element_type().to_dtype())
    if hint == "LATENCY":
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(tensor))
        result["latency_ms"] = spread(time_calls(request.infer, spec["warmup"], spec["repeats"]))
        outputs = request_outputs(request, ["boxes", "labels", mask_output(metadata)])
        width, height = metadata.input_size
        result["detections"] = int((outputs["boxes"].reshape(-1, 5)[:, 4] > 0).sum())
        result["decode_ms"] = spread(time_calls(lambda: decode_outputs(outputs, metadata, height, width), 1, 5))
        result["peak_rss_mib"] = maxrss_mib()  # before the profiling pass and the predictor compile more copies
        del request
        predictor = Predictor(xml, hint="LATENCY")  # what `otxlite predict` runs: read, resize, infer, decode
        for load, count in LOADS.items():  # every candidate (the cap), and the top ones of a usual answer
            def predict(count: int = count) -> Any:
                image = cv2.imread(spec["image"])
                outputs = _best(predictor.pool.infer(predictor.preprocess(image)), count)
                return predictor.postprocess(outputs, *image.shape[:2])

            result[f"end_to_end_{load}_ms"] = spread(time_calls(predict, spec["warmup"], spec["repeats"]))
            result[f"detections_{load}"] = len(predict().scores)
        del predictor
        if spec["profile"]:
            del compiled
            result["profile"] = _profile(core, model, tensor, spec["precision"])
    else:
        result.update(_throughput(compiled, tensor, spec["seconds"]))
    return result


def _best(outputs: dict[str, Any], count: int) -> dict[str, Any]:
    """The first ``count`` detections of an IR's outputs (its NMS returns them best first): what the model's
    threshold keeps of a trained model's answer. A threshold cannot pick them here: random weights give every
    detection the same score."""
    return {name: value[:count] for name, value in outputs.items()}


def _profile(core: Any, model: Any, tensor: Any, precision: str, runs: int = 3) -> dict[str, Any]:
    """OpenVINO's per-layer counters (``PERF_COUNT``), summed by layer type, model part and precision."""
    import openvino as ov

    compiled = core.compile_model(model, "CPU", compile_config("LATENCY", precision, profile=True))
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(tensor))
    request.infer()
    totals: dict[str, dict[str, float]] = {"by_type": defaultdict(float), "by_part": defaultdict(float),
                                           "by_precision": defaultdict(float)}
    for _ in range(runs):
        request.infer()
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            ms = info.real_time.total_seconds() * 1000 / runs
            totals["by_type"][info.node_type] += ms
            totals["by_part"][_model_part(info.node_name)] += ms
            totals["by_precision"][info.exec_type.rsplit("_", 1)[-1]] += ms
    total = sum(totals["by_type"].values())
    return dict(total_ms=round(total, 2), **{
        key: {name: round(ms, 2) for name, ms in sorted(values.items(), key=lambda item: -item[1])}
        for key, values in totals.items()})


def _model_part(node_name: str) -> str:
    """The model part of a layer: ``/backbone/layer1/...`` -> ``backbone``; names without a scope -> ``other``."""
    parts = node_name.split("/")
    if len(parts) > 2 and not parts[0] and re.fullmatch(r"[a-z_]+", parts[1]):
        return parts[1]
    return "other"


def _throughput(compiled: Any, tensor: Any, seconds: float) -> dict[str, Any]:
    """Keep OpenVINO's optimal number of requests busy for ``seconds`` (at least 4 rounds, 10 images); images/s.

    Plain infer requests restarted round-robin, not an ``AsyncInferQueue`` with a Python callback:
    with one, destroying the compiled model afterwards deadlocks now and then (OpenVINO 2026.4: its
    stream threads wait for the GIL that the destructor's thread holds while joining them).
    """
    import openvino as ov

    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    requests = [compiled.create_infer_request() for _ in range(jobs)]
    for request in requests:
        request.set_input_tensor(ov.Tensor(tensor))
        request.infer()  # warm-up, one run on every request
    finished: list[float] = []
    start = time.perf_counter()
    running = list(requests)  # first in, first done: the requests all take about as long
    for request in running:
        request.start_async()
    while running:
        request = running.pop(0)
        request.wait()
        finished.append(time.perf_counter())
        if finished[-1] - start < seconds or len(finished) + len(running) < max(4 * jobs, 10):
            request.start_async()
            running.append(request)
    slices, previous, size = [], start, len(finished) / 5
    for i in range(5):
        chunk = finished[round(i * size):round((i + 1) * size)]
        if chunk:
            slices.append(len(chunk) / (chunk[-1] - previous))
            previous = chunk[-1]
    return dict(requests=jobs, images=len(finished), seconds=round(finished[-1] - start, 2),
                images_per_s=round(len(finished) / (finished[-1] - start), 3),
                slice_images_per_s=spread(slices, 3), peak_rss_mib=maxrss_mib())


def phase_import(spec: dict[str, Any]) -> dict[str, Any]:
    """``prepare_training_data`` on ``scripts/benchmark_import.py``'s synthetic COCO file (written untimed)."""
    from benchmark_import import write_benchmark_dataset

    from otxlite.data.prepare import prepare_training_data

    root = write_benchmark_dataset(Path(spec["data"]), spec["images"], spec["objects"])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        prepared = prepare_training_data(root, None, Path(out))
        seconds = time.perf_counter() - start
    images = sum(subset.stats.images for subset in prepared.subsets.values())
    return dict(seconds=round(seconds, 2), images=images, images_per_s=round(images / seconds, 1))


def phase_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """An Ultralytics peer exported to OpenVINO and timed (``scripts/benchmark_peers.py``)."""
    from benchmark_peers import phase_peer as peer

    return peer(spec)


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dict(
    peak=phase_peak, pytorch=phase_pytorch, export=phase_export, int8=phase_int8, openvino=phase_openvino,
    dataset_import=phase_import, peer=phase_peer)


def worker(phase: str, spec: dict[str, Any]) -> None:
    """Run one phase; print its result (with this process's peak memory) as one JSON line."""
    result = PHASES[phase](spec)
    result.setdefault("peak_rss_mib", maxrss_mib())
    print(MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def run_phase(phase: str, spec: dict[str, Any], log: Path, timeout: int) -> dict[str, Any]:
    """Run ``phase`` in a fresh process; its result, or ``{"error": ...}`` with the log's tail."""
    print(f"#   {phase} {spec.get('hint', '')} {spec.get('precision', '')}".rstrip() + " ...",
          file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": "0", "COLUMNS": "120"}
    busy = others_busy()
    start = time.perf_counter()
    with open(log, "w") as out:
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", phase, json.dumps(spec)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=str(REPO))
            code: Any = proc.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout} s"
    text = log.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        if MARKER in line:
            result = json.loads(line.split(MARKER, 1)[1])
            result["process_s"] = round(time.perf_counter() - start, 1)
            result["others_busy_before"] = busy
            if code != 0:  # a result, then a crash at exit: keep the result, record the crash
                result["exit_code"] = code
            return result
    tail = "\n".join(text.splitlines()[-15:])
    print(f"#   {phase} failed ({code}); log: {log}", file=sys.stderr)
    return {"error": f"exit {code}; log tail:\n{tail}"}


def startup_time(runs: int = 5) -> dict[str, Any]:
    """``otxlite --help`` wall time: one untimed run (file cache), then the median of ``runs``."""
    command = [str(Path(sys.executable).with_name("otxlite")), "--help"]
    if not Path(command[0]).is_file():
        command = [sys.executable, "-m", "otxlite.cli", "--help"]
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=str(REPO))
        if i:
            times.append(time.perf_counter() - start)
    return dict(command=" ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
                seconds=spread(times, 3))


def training_speed(template: str, size: int, data: Path, scratch: Path, timeout: int) -> dict[str, Any]:
    """One quick ``scripts/benchmark_training.py`` run (16 images, batch 2): otxlite vs plain mmengine."""
    output = scratch / "training.json"
    command = [sys.executable, str(REPO / "scripts" / "benchmark_training.py"), "--templates", template,
               "--sizes", str(size), "--images", "16", "--batch-size", "2", "--data", str(data / "training"),
               "--output", str(output)]
    print(f"# training: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    log = scratch / "training.log"
    with open(log, "w") as out:
        try:
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=str(REPO))
        except subprocess.TimeoutExpired:
            pass
    if not output.is_file() or not json.loads(output.read_text())["results"]:
        return {"error": "benchmark_training.py wrote no result; log tail:\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-15:])}
    row = json.loads(output.read_text())["results"][0]
    if "overhead" not in row:
        return {"error": "a training side failed", "row": row}
    return dict(template=template, input_size=size, batch_size=2, images=16,
                otxlite_images_per_s=row["otxlite"]["images_per_s"], plain_images_per_s=row["plain"]["images_per_s"],
                overhead=row["overhead"], overhead_cpu=row["overhead_cpu"],
                otxlite_peak_rss_mib=row["otxlite"]["peak_rss_mib"], plain_peak_rss_mib=row["plain"]["peak_rss_mib"])


def prepare_sample(data: Path) -> tuple[Path, Path, list[str], Path]:
    """The generated sample dataset (calibration data too), its converted train COCO file, labels, an image."""
    from otxlite.data.prepare import prepare_training_data
    from otxlite.data.sample_data import make_sample_dataset

    root = make_sample_dataset(data / "sample", **SAMPLE_IMAGES, seed=0)
    prepared = prepare_training_data(root, None, data / "prepared")
    image = sorted((root / "images" / "train").glob("*.jpg"))[1]
    return root, prepared.subsets["train"].ann_file, prepared.labels, image


def _default_size(template: Any) -> int:
    return int(template.hyper_parameters["data"]["input_size"][0])


def bench_model(template: Any, size: int, args: argparse.Namespace, sample: tuple, precisions: list[str],
                work: Path) -> dict[str, Any]:
    """Every phase of one template at one input size."""
    dataset, train_ann, labels, image = sample
    default = _default_size(template)
    row: dict[str, Any] = dict(template=template.name, input_size=size, default_size=default,
                               template_gmacs_scaled=round(float(template.gigaflops or 0) * (size / default) ** 2, 2))
    common = dict(image=str(image), warmup=args.warmup, repeats=args.repeats)
    weights = work / "weights.pth"
    row["pytorch"] = run_phase("pytorch", dict(common, template=template.name, size=size, labels=labels,
                                               train_ann=str(train_ann), work_dir=str(work), weights=str(weights)),
                               work / "pytorch.log", args.timeout)
    if "error" in row["pytorch"]:
        return row
    row["export"] = run_phase("export", dict(weights=str(weights), output=str(work / "fp32")), work / "export.log",
                              args.timeout)
    if "error" in row["export"]:
        return row
    row["int8"] = run_phase("int8", dict(xml=row["export"]["xml"], dataset=str(dataset), output=str(work / "int8"),
                                         subset_size=args.subset_size, preset=args.preset),
                            work / "int8.log", args.timeout)
    irs = {"FP32": row["export"]["xml"]}
    if "error" not in row["int8"]:
        irs["INT8"] = row["int8"]["xml"]
    row["openvino"] = {}
    for ir, xml in irs.items():
        for precision in precisions:
            for hint in ("LATENCY", "THROUGHPUT"):
                spec = dict(common, xml=xml, precision=precision, hint=hint, seconds=args.throughput_seconds,
                            profile=args.profile and precision == "f32")
                row["openvino"].setdefault(ir, {}).setdefault(precision, {})[hint.lower()] = run_phase(
                    "openvino", spec, work / f"openvino_{ir}_{precision}_{hint}.log", args.timeout)
    row.update(derived(row, precisions))
    return row


def bench_peers(args: argparse.Namespace, sample: tuple, scratch: Path, sizes: list[int]) -> list[dict[str, Any]]:
    """Every ``--peers`` model at every input size the templates were measured at, FP32 and INT8 (quantized on
    the images otxlite's INT8 calibrates on)."""
    from otxlite.data.formats import DataOptions
    from otxlite.quantization.int8 import calibration_images

    calibration = calibration_images(sample[0], args.subset_size, DataOptions())
    rows = []
    for name in args.peers:
        for size in sizes:
            print(f"# peer {name} @ {size}", file=sys.stderr, flush=True)
            work = scratch / f"peer_{name}_{size}"
            work.mkdir(parents=True, exist_ok=True)
            spec = dict(model=name, size=size, image=str(sample[3]), warmup=args.warmup, repeats=args.repeats,
                        work_dir=str(work), config=compile_config("LATENCY", "f32"),
                        calibration=[str(path) for path in calibration])
            rows.append({"model": name, "input_size": size, **run_phase("peer", spec, work / "peer.log", args.timeout)})
    return rows


def _get(node: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def derived(row: dict[str, Any], precisions: list[str]) -> dict[str, Any]:
    """Speed-up ratios and effective GFLOP/s of one row."""
    pytorch = _get(row, "pytorch", "latency_ms", "median")
    out: dict[str, Any] = {"ratios": {}, "effective_gflops": {}}
    for precision in precisions:
        fp32 = _get(row, "openvino", "FP32", precision, "latency", "latency_ms", "median")
        int8 = _get(row, "openvino", "INT8", precision, "latency", "latency_ms", "median")
        fp32_tput = _get(row, "openvino", "FP32", precision, "throughput", "images_per_s")
        int8_tput = _get(row, "openvino", "INT8", precision, "throughput", "images_per_s")
        out["ratios"][precision] = dict(
            openvino_vs_pytorch=round(pytorch / fp32, 3) if pytorch and fp32 else None,
            int8_vs_fp32=round(fp32 / int8, 3) if fp32 and int8 else None,
            int8_vs_fp32_throughput=round(int8_tput / fp32_tput, 3) if fp32_tput and int8_tput else None)
    gmacs = _get(row, "pytorch", "gmacs")
    if gmacs:
        latencies = {"pytorch": pytorch, **{f"{ir}_{p}": _get(row, "openvino", ir, p, "latency", "latency_ms", "median")
                                            for ir in ("FP32", "INT8") for p in precisions}}
        out["effective_gflops"] = {name: round(2 * gmacs / (ms / 1000), 1) for name, ms in latencies.items() if ms}
    return out


def _find(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a nested dict/list."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


def _cell(latency: dict[str, Any] | None) -> str:
    if not latency:
        return "-"
    return f"{latency['median']:.0f} ({latency['p10']:.0f}-{latency['p90']:.0f})"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, target: float) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x met" if value >= target else f"{value:.2f}x **missed** (by {target - value:.2f}x)"


def _rss(row: dict[str, Any]) -> str:
    phases = [row.get("pytorch"), row.get("export"), row.get("int8"),
              _get(row, "openvino", "FP32", "f32", "latency"), _get(row, "openvino", "INT8", "f32", "latency")]
    return " / ".join(f"{p['peak_rss_mib']:.0f}" if p and "peak_rss_mib" in p else "-" for p in phases)


def table(report: dict[str, Any]) -> str:
    """The Markdown report: machine, inference table, default-precision table, profiles, extras, notes."""
    m = report["machine"]
    flags = ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in m["flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items()
                         if v and k in ("torch", "openvino", "nncf", "mmdet"))
    peak = report.get("peak", {})
    lines = [f"**Machine**: {m['cpu']}, {m['usable_cores']} usable cores ({m['cpu_count']} online); {flags}. "
             f"{versions}; Python {m['python']}. Load average at start {m['load_average_at_start']}, "
             f"at end {m.get('load_average_at_end', '-')} (this benchmark's own load included).", ""]
    busy = [value for value in _find(report, "others_busy_before") if value is not None]
    if busy and max(busy) > BUSY_LIMIT:
        lines += [f"**Warning**: other processes used up to {100 * max(busy):.0f}% of the CPUs between phases "
                  f"(median {100 * sorted(busy)[len(busy) // 2]:.0f}%), so these timings are not comparable; "
                  "PyTorch's OpenMP threads suffer most from sharing cores. Rerun on an idle machine.", ""]
    if "f32" in peak:
        lines.append(f"**Peak**: OpenVINO FP32 {peak['n']}x{peak['n']} MatMul {peak['f32']['gflops']:.0f} GFLOP/s "
                     f"({peak['threads']} threads)" + "".join(
                         f"; at OpenVINO's default precision ({peak['default_precision']}) "
                         f"{peak[p]['gflops']:.0f} GFLOP/s" for p in peak if p == "default")
                     + ". GFLOP/s count 2 FLOPs per multiply-add.")
        lines.append("")
    peak_f32 = _get(peak, "f32", "gflops")
    lines += ["Latency in ms, batch 1: median (p10-p90). Throughput in images/s. OpenVINO pinned to f32 "
              "(`INFERENCE_PRECISION_HINT=f32`); INT8 layers run in INT8, the rest in f32.", "",
              "| template | input | GMACs | PyTorch ms | OV FP32 ms | OV FP32 img/s | INT8 ms | INT8 img/s "
              f"| OV FP32 / PyTorch (>= {TARGETS['openvino_vs_pytorch']}x) "
              f"| INT8 / FP32 (>= {TARGETS['int8_vs_fp32']}x) "
              "| GFLOP/s PyTorch / FP32 / INT8 (% of peak) | peak MiB PyTorch / export / NNCF / FP32 / INT8 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        ov = row.get("openvino", {})
        ratios = _get(row, "ratios", "f32") or {}
        gflops = row.get("effective_gflops", {})
        eff = " / ".join(f"{gflops[k]:.0f}" + (f" ({100 * gflops[k] / peak_f32:.0f}%)" if peak_f32 else "")
                         if k in gflops else "-" for k in ("pytorch", "FP32_f32", "INT8_f32"))
        errors = [name for name in ("pytorch", "export", "int8") if "error" in row.get(name, {})]
        lines.append(
            f"| {row['template']} | {row['input_size']} | {_num(_get(row, 'pytorch', 'gmacs'), 1)} "
            f"| {_cell(_get(row, 'pytorch', 'latency_ms'))} "
            f"| {_cell(_get(ov, 'FP32', 'f32', 'latency', 'latency_ms'))} "
            f"| {_num(_get(ov, 'FP32', 'f32', 'throughput', 'images_per_s'))} "
            f"| {_cell(_get(ov, 'INT8', 'f32', 'latency', 'latency_ms'))} "
            f"| {_num(_get(ov, 'INT8', 'f32', 'throughput', 'images_per_s'))} "
            f"| {_ratio(ratios.get('openvino_vs_pytorch'), TARGETS['openvino_vs_pytorch'])} "
            f"| {_ratio(ratios.get('int8_vs_fp32'), TARGETS['int8_vs_fp32'])} | {eff} | {_rss(row)} |"
            + (f" failed: {', '.join(errors)}" if errors else ""))
    if any(_get(row, "openvino", "FP32", "default") for row in report["results"]):
        precision = peak.get("default_precision", "default")
        lines += ["", f"OpenVINO's default inference precision on this CPU ({precision}; otxlite pins f32):", "",
                  "| template | input | FP32 IR ms | FP32 IR img/s | INT8 IR ms | INT8 IR img/s "
                  "| vs pinned f32 (FP32 IR) | INT8 / FP32 IR |", "|---|---|---|---|---|---|---|---|"]
        for row in report["results"]:
            ov = row.get("openvino", {})
            f32 = _get(ov, "FP32", "f32", "latency", "latency_ms", "median")
            default = _get(ov, "FP32", "default", "latency", "latency_ms", "median")
            ratio = _get(row, "ratios", "default", "int8_vs_fp32")
            lines.append(
                f"| {row['template']} | {row['input_size']} "
                f"| {_cell(_get(ov, 'FP32', 'default', 'latency', 'latency_ms'))} "
                f"| {_num(_get(ov, 'FP32', 'default', 'throughput', 'images_per_s'))} "
                f"| {_cell(_get(ov, 'INT8', 'default', 'latency', 'latency_ms'))} "
                f"| {_num(_get(ov, 'INT8', 'default', 'throughput', 'images_per_s'))} "
                f"| {f'{f32 / default:.2f}x' if f32 and default else '-'} | {f'{ratio:.2f}x' if ratio else '-'} |")
    lines += _peer_table(report)
    profiles = [_profile_line(row) for row in report["results"]]
    if any(profiles):
        lines += ["", "Where the time goes (OpenVINO `PERF_COUNT`, f32 pinned; share of the summed layer times):", ""]
        lines += [p for p in profiles if p]
    lines += ["", *_extras(report)]
    lines += ["", *_notes(report)]
    return "\n".join(lines)


def _peer_table(report: dict[str, Any]) -> list[str]:
    """otxlite's IRs beside the peers, FP32 and INT8: network and end-to-end latency at both loads, and the
    issue's ratios (INT8 against INT8)."""
    peers = report.get("peers") or []
    if not peers:
        return []
    loads = " / ".join(f"{load} ({count})" for load, count in LOADS.items())
    lines = ["", "Side by side with the peers users compare otxlite with (OpenVINO, LATENCY hint, f32, same run; "
                 "end to end = image file to instance masks at the image's size, with as many detections as the "
                 f"load says: {loads}):", "",
             "| model | input | network ms | end to end ms, worst | end to end ms, typical | .bin MB |",
             "|---|---|---|---|---|---|"]
    for row in report["results"]:
        for ir in ("FP32", "INT8"):
            latency = _get(row, "openvino", ir, "f32", "latency") or {}
            if latency.get("latency_ms"):
                size_mb = _get(row, "export" if ir == "FP32" else "int8", "bin_mb")
                lines.append(f"| otxlite {row['template']} {ir} | {row['input_size']} | {_cell(latency['latency_ms'])} "
                             + "".join(f"| {_cell(latency.get(f'end_to_end_{load}_ms'))}"
                                       f"{_off_load(load, latency.get(f'detections_{load}'))} " for load in LOADS)
                             + f"| {_num(size_mb, 1)} |")
    for peer in peers:
        if "error" in peer:
            lines.append(f"| {peer['model']} | {peer['input_size']} | not measured: Ultralytics is not installed "
                         "here or failed (`pip install -e .[benchmark]`; log in the JSON) | | | |")
            continue
        for ir in ("FP32", "INT8"):
            measured = peer[ir]
            lines.append(f"| {peer['model']} {ir} (Ultralytics {peer['ultralytics']}) | {peer['input_size']} "
                         f"| {_cell(measured['latency_ms'])} "
                         + "".join(f"| {_cell(measured['end_to_end_ms'][load])}"
                                   f"{_off_load(load, measured['detections'][load])} " for load in LOADS)
                         + f"| {_num(measured['bin_mb'], 1)} |")
    for row in report["results"]:
        for peer in peers:
            if "error" in peer or peer["input_size"] != row["input_size"]:
                continue
            for load in LOADS:
                ours = _get(row, "openvino", "INT8", "f32", "latency", f"end_to_end_{load}_ms", "median")
                theirs = _get(peer, "INT8", "end_to_end_ms", load, "median")
                if ours and theirs:
                    lines.append(f"\n{row['template']} INT8 / {peer['model']} INT8, end to end at {row['input_size']}, "
                                 f"{load} load: {ours / theirs:.2f}x (target <= 1.0x)")
    return lines


def _off_load(load: str, detections: int | None) -> str:
    """A note where a side returned another number of detections than ``load`` asks for (its time is not that
    load's)."""
    return "" if detections == LOADS[load] else f" **{detections} detections**"


def _shares(values: dict[str, float], top: int) -> str:
    total = sum(values.values()) or 1.0
    return ", ".join(f"{name} {100 * ms / total:.0f}%" for name, ms in list(values.items())[:top]
                     if ms >= 0.005 * total)


def _profile_line(row: dict[str, Any]) -> str:
    parts = []
    for ir in ("FP32", "INT8"):
        profile = _get(row, "openvino", ir, "f32", "latency", "profile")
        if profile:
            parts.append(f"{ir} ({profile['total_ms']:.0f} ms summed): parts {_shares(profile['by_part'], 6)}; "
                         f"layer types {_shares(profile['by_type'], 6)}; "
                         f"precisions {_shares(profile['by_precision'], 4)}")
    return f"- {row['template']} @ {row['input_size']}: " + " | ".join(parts) if parts else ""


def _extras(report: dict[str, Any]) -> list[str]:
    rows = []
    startup = report.get("startup")
    if startup:
        s = startup["seconds"]
        rows.append(f"| `otxlite --help` start-up | {s['median']:.2f} s ({s['p10']:.2f}-{s['p90']:.2f}) "
                    f"| < {TARGETS['help_s']:.0f} s | {'met' if s['median'] < TARGETS['help_s'] else '**missed**'} |")
    imported = report.get("import")
    if imported:
        if "error" in imported:
            rows.append("| dataset import | failed | | |")
        else:
            rows.append(f"| import of a {imported['images']:,}-image COCO file | {imported['seconds']:.1f} s "
                        f"({imported['images_per_s']:.0f} images/s, peak {imported['peak_rss_mib']:.0f} MiB) "
                        f"| < {TARGETS['import_s']:.0f} s | "
                        f"{'met' if imported['seconds'] < TARGETS['import_s'] else '**missed**'} |")
    training = report.get("training")
    if training:
        if "error" in training:
            rows.append("| training otxlite vs plain mmengine | failed | | |")
        else:
            met = training["overhead"] <= TARGETS["training_overhead"]
            rows.append(f"| training {training['template']} @ {training['input_size']}, batch 2: otxlite vs plain "
                        f"mmengine | {training['otxlite_images_per_s']:.2f} vs {training['plain_images_per_s']:.2f} "
                        f"images/s, overhead {training['overhead']:.3f} (CPU time {training['overhead_cpu']:.3f}) "
                        f"| <= {TARGETS['training_overhead']} | {'met' if met else '**missed**'} |")
    return ["| measure | result | target | |", "|---|---|---|---|", *rows] if rows else []


def _notes(report: dict[str, Any]) -> list[str]:
    notes = ["Notes:",
             "- Random weights (no training): post-processing works on random proposals. The RoIs per image are "
             "capped by the test config (box head: RPN `max_per_img` proposals; mask head: `rcnn.max_per_img` "
             "detections); random scores pass the score threshold, so the mask head runs on the cap: a trained "
             "model's worst case, so the latency is representative. Counts seen (PyTorch): "
             + "; ".join(f"{r['template']}@{r['input_size']} {r['pytorch'].get('proposals', '-')}/"
                         f"{r['pytorch'].get('proposal_cap', '-')} proposals, {r['pytorch'].get('detections')}/"
                         f"{r['pytorch'].get('detection_cap', '-')} detections"
                         for r in report["results"] if "error" not in r.get("pytorch", {"error": 1})) + ".",
             "- GMACs: multiply-adds of the dense network (backbone, neck, RPN head, box head on the proposals "
             "counted above, mask head on 100 RoIs) of the model as timed (3 classes, this input size), counted "
             "like the templates' `gigaflops` (1 multiply-add = 1 FLOP); effective GFLOP/s = 2 x GMACs / median "
             "latency, against the MatMul peak. Post-processing and RoIAlign are in the latency, not in the count.",
             "- PyTorch: `model.test_step` (normalization, forward, NMS, masks pasted at the input size). "
             "OpenVINO: sync `infer` of the preprocessed tensor (normalization and NMS inside the IR); pasting the "
             "28x28 masks on the host (`decode`) is extra: "
             + "; ".join(f"{r['template']}@{r['input_size']} {decode['median']} ms" for r in report["results"]
                         if (decode := _get(r, "openvino", "FP32", "f32", "latency", "decode_ms"))) + ".",
             "- Peak MiB: `ru_maxrss` of each phase's own process (PyTorch: build + inference; export; NNCF "
             "quantization; OpenVINO FP32 / INT8 latency: read + compile + inference).",
             f"- Settings: {json.dumps(report['settings'])}."]
    return notes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is measured, and example runs: see the top of this script.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", nargs="+", help="template names or ids (default: all shipped templates)")
    parser.add_argument("--sizes", nargs="+", default=["default", "320"],
                        help="input sizes: 'default' (the template's) and/or pixels, multiples of 32 "
                             "(default: default 320)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per latency (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    parser.add_argument("--throughput-seconds", type=float, default=10.0,
                        help="duration of each throughput measurement (default 10)")
    parser.add_argument("--subset-size", type=int, default=16, help="NNCF calibration images (default 16)")
    parser.add_argument("--preset", choices=("mixed", "performance"), default="mixed", help="NNCF preset")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip OpenVINO's per-layer profile (PERF_COUNT) of the f32 latency runs")
    parser.add_argument("--default-precision", action="store_true",
                        help="also measure OpenVINO at its default inference precision where that is not f32 "
                             "(bf16 on CPUs with AVX-512 BF16 or AMX)")
    parser.add_argument("--skip-startup", action="store_true", help="skip the `otxlite --help` start-up time")
    parser.add_argument("--skip-import", action="store_true", help="skip the 10,000-image COCO import")
    parser.add_argument("--import-images", type=int, default=10_000, help="images in the import benchmark")
    parser.add_argument("--skip-training", action="store_true", help="skip training speed otxlite vs plain")
    parser.add_argument("--peers", nargs="*", default=list(PEERS),
                        help="Ultralytics models measured beside the templates (default: %(default)s; none: "
                             "--peers with no name). Needs `pip install -e .[benchmark]`")
    parser.add_argument("--training-template", default="MaskRCNN-ResNet18", help="template of the training run")
    parser.add_argument("--training-size", type=int, default=256, help="input size of the training run")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per phase process (default 3600)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dataset cache (default {DEFAULT_DATA})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON results; the Markdown goes beside it as .md (default benchmarks/results.json)")
    parser.add_argument("--keep", action="store_true", help="keep the models, IRs and phase logs (path printed)")
    parser.add_argument("--worker", nargs=2, metavar=("PHASE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for size in args.sizes:
        if size != "default" and not (size.isdigit() and int(size) % 32 == 0 and int(size) > 0):
            parser.error(f"--sizes: '{size}' is neither 'default' nor a positive multiple of 32 pixels "
                         "(export needs sides divisible by 32)")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker[0], json.loads(args.worker[1]))
        return 0
    from otxlite.core.templates import list_templates, load_template

    templates = [load_template(name) for name in args.templates] if args.templates else list_templates()
    info = machine_info(("torch", "openvino", "nncf", "mmdet", "mmengine", "mmcv", "mmdeploy", "otxlite"))
    md_path = args.output.with_suffix(".md")
    scratch = Path(tempfile.mkdtemp(prefix="otxlite-benchmark-"))
    report: dict[str, Any] = dict(machine=info, settings={k: str(v) if isinstance(v, Path) else v
                                                          for k, v in vars(args).items() if k != "worker"},
                                  results=[])

    def save() -> None:
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        write_json_atomic(args.output, report)
        write_text_atomic(md_path, table(report) + "\n")

    print(f"# {info['cpu']}, {info['usable_cores']} cores, load average {info['load_average_at_start']}; "
          f"work folder {scratch}", file=sys.stderr)
    try:
        peak = run_phase("peak", dict(n=MATMUL_N, precisions=["f32"], warmup=2, repeats=max(args.repeats, 5)),
                         scratch / "peak.log", args.timeout)
        precisions = ["f32"]
        if "error" not in peak and peak["default_precision"] != "f32" and args.default_precision:
            precisions.append("default")
            peak["default"] = run_phase("peak", dict(n=MATMUL_N, precisions=["default"], warmup=2,
                                                     repeats=max(args.repeats, 5)),
                                        scratch / "peak_default.log", args.timeout)["default"]
        report["peak"] = peak
        if not args.skip_startup:
            report["startup"] = startup_time()
        if not args.skip_import:
            report["import"] = run_phase("dataset_import", dict(data=str(args.data / "import"),
                                                                images=args.import_images, objects=5),
                                         scratch / "import.log", args.timeout)
        save()
        sample = prepare_sample(args.data)
        for template in templates:
            sizes = dict.fromkeys(_default_size(template) if s == "default" else int(s) for s in args.sizes)
            for size in sizes:
                print(f"# {template.name} @ {size}", file=sys.stderr, flush=True)
                row = bench_model(template, size, args, sample, precisions, scratch / f"{template.name}_{size}")
                report["results"].append(row)
                save()
        report["peers"] = bench_peers(args, sample, scratch, sorted({row["input_size"] for row in report["results"]}))
        save()
        if not args.skip_training:
            report["training"] = training_speed(args.training_template, args.training_size, args.data, scratch,
                                                args.timeout)
        save()
    finally:
        if args.keep:
            print(f"# models, IRs and logs kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(table(report))
    print(f"\nDetails: {args.output}; table: {md_path}", file=sys.stderr)
    failed = any("error" in (row.get(name) or {}) for row in report["results"]
                 for name in ("pytorch", "export", "int8"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
