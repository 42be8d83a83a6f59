"""scripts/benchmark.py without models: arguments, statistics, OpenVINO timing helpers, the table, a worker."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_model():
    """A two-layer OpenVINO model whose layers are named like an exported IR's."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 64], ov.Type.f32, name="input")
    hidden = ops.matmul(x, ops.constant(np.ones((64, 64), np.float32)), False, False)
    hidden.set_friendly_name("/backbone/fc1/MatMul")
    out = ops.relu(ops.matmul(hidden, ops.constant(np.ones((64, 8), np.float32)), False, False))
    out.set_friendly_name("Relu_7")
    return ov.Model([out], [x], "tiny")


def test_arguments(bench) -> None:
    args = bench.parse_args([])
    assert args.sizes == ["default", "320"] and args.repeats == 10 and args.profile and not args.worker
    assert bench.parse_args(["--sizes", "192", "--repeats", "3", "--skip-training"]).skip_training
    for bad in (["--sizes", "big"], ["--sizes", "200"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_spread_model_parts_and_machine(bench) -> None:
    assert bench.spread([float(v) for v in range(1, 12)]) == dict(median=6.0, p10=2.0, p90=10.0, n=11)
    assert bench._model_part("/backbone/layer1/layer1.0/conv1/Conv") == "backbone"
    assert bench._model_part("/mask_head/convs.0/conv/Conv") == "mask_head"
    assert bench._model_part("Gather_50___") == bench._model_part("/Concat_3/x") == "other"
    from otxlite.core.measure import ISA_FLAGS

    machine = bench.machine_info(("numpy", "not-a-package"))
    assert machine["cpu"] and set(machine["flags"]) == set(ISA_FLAGS) and machine["usable_cores"] >= 1
    assert machine["versions"]["numpy"] and machine["versions"]["not-a-package"] is None
    assert 0.0 <= bench.others_busy(0.05) <= 1.0


def test_throughput_and_profile(bench, tiny_model) -> None:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(tiny_model, "CPU", bench.compile_config("THROUGHPUT", "f32"))
    tensor = np.ones((1, 64), np.float32)
    result = bench._throughput(compiled, tensor, 0.2)
    assert result["images"] >= 10 and result["images_per_s"] > 0 and result["slice_images_per_s"]["n"] == 5
    profile = bench._profile(core, tiny_model, tensor, "f32", runs=2)
    assert profile["total_ms"] >= 0 and profile["by_type"] and profile["by_precision"]
    assert set(profile["by_part"]) <= {"backbone", "other"}


def _row(pytorch_ms: float, fp32_ms: float, int8_ms: float) -> dict:
    def latency(ms: float) -> dict:
        return {"latency_ms": {"median": ms, "p10": ms * 0.9, "p90": ms * 1.1, "n": 3}, "peak_rss_mib": 500.0}

    return dict(template="T", input_size=192, default_size=800, template_gmacs_scaled=1.0,
                pytorch=dict(latency(pytorch_ms), gmacs=10.0, proposals=900, proposal_cap=1000, detections=100,
                             detection_cap=100),
                export={"seconds": 1.0, "peak_rss_mib": 900.0}, int8={"seconds": 2.0, "peak_rss_mib": 800.0},
                openvino={"FP32": {"f32": {"latency": latency(fp32_ms), "throughput": {"images_per_s": 4.0}}},
                          "INT8": {"f32": {"latency": latency(int8_ms), "throughput": {"images_per_s": 5.0}}}})


def test_ratios_and_table(bench) -> None:
    row = _row(pytorch_ms=300.0, fp32_ms=100.0, int8_ms=90.0)
    row.update(bench.derived(row, ["f32"]))
    assert row["ratios"]["f32"] == dict(openvino_vs_pytorch=3.0, int8_vs_fp32=1.111, int8_vs_fp32_throughput=1.25)
    assert row["effective_gflops"]["FP32_f32"] == 200.0  # 2 x 10 GMACs / 0.1 s
    report = dict(machine=dict(cpu="CPU", cpu_count=2, usable_cores=2, flags={"AVX2": True}, python="3.11",
                               versions={"torch": "2"}, load_average_at_start=[0.0]),
                  settings={"repeats": 3}, peak=dict(n=2048, threads=2, default_precision="f32",
                                                     f32=dict(gflops=400.0)),
                  results=[row], startup={"seconds": {"median": 0.5, "p10": 0.4, "p90": 0.6}})
    text = bench.table(report)
    assert "| T | 192 | 10.0 | 300 (270-330) | 100 (90-110) | 4.00 | 90 (81-99) | 5.00 | 3.00x met " in text
    assert "1.11x **missed** (by 0.19x)" in text and "200 (50%)" in text
    assert "500 / 900 / 800 / 500 / 500" in text and "| `otxlite --help` start-up | 0.50 s" in text
    assert "Warning" not in text
    row["export"]["others_busy_before"] = 0.5
    assert "**Warning**: other processes used up to 50% of the CPUs" in bench.table(report)


def test_peak_worker_prints_one_json_line(bench) -> None:
    spec = dict(n=128, precisions=["f32"], warmup=1, repeats=3)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", "peak", json.dumps(spec)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix(bench.MARKER))
    assert result["f32"]["gflops"] > 0 and result["default_precision"] and result["peak_rss_mib"] > 0


def test_the_peer_table_says_where_a_side_answered_another_load(bench) -> None:
    """A side that returned fewer detections than a load asks for is timed at another load: the table says so."""
    timing = {"median": 50.0, "p10": 45.0, "p90": 55.0}
    latency = dict(latency_ms=timing, end_to_end_worst_ms=timing, end_to_end_typical_ms=timing,
                   detections_worst=100, detections_typical=10)
    row = dict(template="RTMDet-Ins-tiny", input_size=640, export={"bin_mb": 22.0}, int8={"bin_mb": 6.0},
               openvino={ir: {"f32": {"latency": latency}} for ir in ("FP32", "INT8")})
    peer = dict(model="yolo26n-seg", input_size=640, ultralytics="8.4.190", **{
        ir: dict(latency_ms=timing, end_to_end_ms={"worst": timing, "typical": timing},
                 detections={"worst": 0, "typical": 10}, bin_mb=3.0) for ir in ("FP32", "INT8")})
    lines = "\n".join(bench._peer_table({"results": [row], "peers": [peer]})).splitlines()
    ours = [line for line in lines if line.startswith("| otxlite")]
    theirs = [line for line in lines if line.startswith("| yolo26n-seg")]
    assert len(ours) == 2 and not any("detections" in line for line in ours)
    assert len(theirs) == 2 and all("50 (45-55) **0 detections** | 50 (45-55) |" in line for line in theirs)
