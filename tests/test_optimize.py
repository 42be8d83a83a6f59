"""otxlite optimize: NNCF INT8 quantization of the session's exported model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openvino as ov
import pytest
from conftest import slow_fixture


def otxlite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


@slow_fixture(scope="module")
def int8_run(exported_ir: Path, sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8")
    result = otxlite("optimize", "--load-weights", str(exported_ir), "--train-data-roots", str(sample_dataset),
                     "--val-data-roots", str(sample_dataset), "-o", str(out), "--subset-size", "500",
                     "--max-accuracy-drop", "1.0")  # a barely trained model: the bound is tested on a learned one
    return out, result


def test_int8_ir_is_quantized_and_smaller(int8_run, exported_ir: Path) -> None:
    out, result = int8_run
    assert result.returncode == 0, result.stderr
    model = ov.Core().read_model(str(out / "openvino.xml"))
    fake_quantize = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fake_quantize) > 50
    assert (out / "openvino.bin").stat().st_size < 0.45 * exported_ir.with_suffix(".bin").stat().st_size
    assert model.get_rt_info(["otxlite", "precision"]).astype(str) == "INT8"
    assert "quantize" in model.get_rt_info(["otxlite", "optimization", "method"]).astype(str)
    assert model.get_rt_info(["model_info", "model_type"]).astype(str) == "MaskRCNN"  # Model API metadata kept


def test_int8_report_compares_fp32_and_int8(int8_run, trained_run) -> None:
    out, result = int8_run
    assert "FP32 vs INT8" in result.stdout and "mask mAP per class" in result.stdout
    assert "calibrating on all 32" in result.stderr  # asked for 500, the sample has 32 images
    int8 = json.loads((out / "performance.json").read_text())
    rows = int8["fp32_vs_int8"]
    assert int8["mask_mAP"] == rows["INT8"]["mask_mAP"]
    assert set(rows["per_class_mask_mAP"]) == {"disc", "star", "ring"}
    assert rows["fp32_layers"] == 0 and rows["fp32_groups"] == []  # a bound of 1.0 reverts nothing
    assert rows["INT8"]["bin_MB"] < 0.45 * rows["FP32"]["bin_MB"]


def test_predict_and_eval_work_on_int8(int8_run, sample_dataset: Path, tmp_path: Path) -> None:
    out, _ = int8_run
    result = otxlite("eval", "--load-weights", str(out / "openvino.xml"), "--test-data-roots", str(sample_dataset),
                     "-o", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    image = next((sample_dataset / "images" / "val").glob("*.jpg"))
    result = otxlite("predict", "--load-weights", str(out / "openvino.xml"), "-i", str(image), "-o", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr


def test_already_int8_is_refused(int8_run, sample_dataset: Path, tmp_path: Path) -> None:
    out, _ = int8_run
    result = otxlite("optimize", "--load-weights", str(out / "openvino.xml"), "--train-data-roots",
                     str(sample_dataset), "-o", str(tmp_path))
    assert result.returncode != 0 and "already quantized" in result.stderr and "Traceback" not in result.stderr


def test_foreign_ir_is_refused(exported_ir: Path, sample_dataset: Path, tmp_path: Path) -> None:
    model = ov.Core().read_model(str(exported_ir))
    ov.save_model(ov.Model(model.get_results(), model.get_parameters(), "foreign"), str(tmp_path / "foreign.xml"))
    result = otxlite("optimize", "--load-weights", str(tmp_path / "foreign.xml"), "--train-data-roots",
                     str(sample_dataset), "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "metadata" in result.stderr


@pytest.mark.slow
def test_int8_of_a_model_that_learned_keeps_the_bound(coins_ir: Path, coins: Path, coins_val: Path,
                                                      tmp_path: Path) -> None:
    """On a model trained on a real photo (it detects the held-out coins), the saved INT8 IR evaluated by
    `otxlite eval` stays within --max-accuracy-drop of the saved FP32 IR evaluated the same way."""
    fp32 = coins_ir
    result = otxlite("optimize", "--load-weights", str(fp32), "--train-data-roots", str(coins),
                     "--val-data-roots", str(coins_val), "-o", str(tmp_path / "int8"), "--max-accuracy-drop", "0.01")
    assert result.returncode == 0, result.stderr
    assert "mask mAP per class" in result.stdout and "Layers kept in FP32" in result.stdout
    assert "mostly noise" in result.stderr  # one validation image: the bound is flagged as weak
    scores = {}
    for name, xml in (("FP32", fp32), ("INT8", tmp_path / "int8" / "openvino.xml")):
        run = otxlite("eval", "--load-weights", str(xml), "--test-data-roots", str(coins_val), "-o", str(tmp_path / name))
        assert run.returncode == 0, run.stderr
        scores[name] = json.loads((tmp_path / name / "performance.json").read_text())["mask_mAP"]
    assert scores["FP32"] >= 0.3, f"the model must have learned for this test to mean anything: {scores}"
    assert scores["FP32"] - scores["INT8"] <= 0.01 + 1e-6, scores
    model = ov.Core().read_model(str(tmp_path / "int8" / "openvino.xml"))
    assert float(model.get_rt_info(["otxlite", "optimization", "measured_drop"]).astype(str)) <= 0.01
    report = json.loads((tmp_path / "int8" / "performance.json").read_text())
    assert report["fp32_vs_int8"]["per_class_mask_mAP"]["coin"]["FP32"] == pytest.approx(scores["FP32"], abs=1e-4)


def _two_layer_model() -> ov.Model:
    import numpy as np
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 16, 16], np.float32, name="image")
    a = ops.convolution(x, ops.constant(rng.normal(size=(8, 3, 3, 3)).astype(np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
    a.set_friendly_name("/backbone/stage/Conv")
    a = ops.add(a, ops.constant(rng.normal(size=(1, 8, 1, 1)).astype(np.float32)))
    a.set_friendly_name("/backbone/stage/Add")
    b = ops.convolution(ops.relu(a), ops.constant(rng.normal(size=(4, 8, 1, 1)).astype(np.float32)), [1, 1], [0, 0],
                        [0, 0], [1, 1])
    b.set_friendly_name("/neck/conv/Conv")
    return ov.Model([ops.result(b)], [x], "two_layers")


def test_layers_go_back_to_fp32_until_the_bound_holds() -> None:
    """Each INT8 layer costs 0.1 of a made-up score: a 0.05 bound needs both back in FP32, a 0.15 bound one;
    with every layer back, the model computes exactly what the FP32 model does."""
    import nncf
    import numpy as np

    from otxlite.quantization.accuracy_control import keep_layers_fp32, quantize_within_bound, quantized_layers

    fp32 = _two_layer_model()
    data = [np.random.default_rng(i).normal(size=(1, 3, 16, 16)).astype(np.float32) for i in range(4)]
    quantized = nncf.quantize(fp32, nncf.Dataset(data), subset_size=4)
    assert set(quantized_layers(quantized)) == {"/backbone/stage/Conv", "/neck/conv/Conv"}

    def score(model: ov.Model) -> float:
        return 1.0 - 0.1 * len(quantized_layers(model))

    tight = quantize_within_bound(quantized, fp32, 1.0, score, 0.05, lambda m: m)
    assert tight.fp32_layers == 2 and tight.drop == pytest.approx(0.0)
    loose = quantize_within_bound(quantized, fp32, 1.0, score, 0.15, lambda m: m)
    assert loose.fp32_layers == 1 and loose.drop == pytest.approx(0.1)

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    reverted = core.compile_model(keep_layers_fp32(quantized, fp32, set(quantized_layers(quantized))), "CPU", config)
    reference = core.compile_model(fp32, "CPU", config)
    np.testing.assert_allclose(reverted(data[0])[0], reference(data[0])[0], rtol=1e-5, atol=1e-4)
    assert not np.allclose(core.compile_model(quantized, "CPU", config)(data[0])[0], reference(data[0])[0], atol=1e-4)


def test_benchmark_measures_an_int8_ir_as_itself(int8_run, tiny_dataset: Path, tmp_path: Path) -> None:
    """`otxlite benchmark` on an INT8 IR measures that form alone (nothing to export or quantize)."""
    out, _ = int8_run
    result = otxlite("benchmark", "--load-weights", str(out / "openvino.xml"), "--test-data-roots", str(tiny_dataset),
                     "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    forms = json.loads((tmp_path / "benchmark.json").read_text())["forms"]
    assert list(forms) == ["IR INT8"] and forms["IR INT8"]["images_per_s"] > 0
