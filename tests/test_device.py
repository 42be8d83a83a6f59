"""``--device auto|cuda|cpu``, mixed precision on CUDA, and models trained on a GPU used on the CPU.

What a CPU machine cannot show (a GPU beside a CPU-only mmcv, a CUDA mmcv whose kernels do not fit the GPU)
is described to ``choose_device``/``use_device`` as a ``CudaProbe``; the real probe of this machine is tested
too. A GPU-trained checkpoint is simulated by saving tensors with torch's storage location ``cuda:0``, the
bytes ``torch.save`` writes for tensors on a GPU.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from otxlite.training.device import CudaProbe, DeviceChoice, choose_device, cuda_settings, probe_cuda, use_device
from otxlite.core.errors import OtxliteError
from otxlite.core.templates import apply_overrides, load_template

NO_GPU = CudaProbe(gpus=0, torch_cuda="13.0", mmcv_cuda=None)
CPU_TORCH = CudaProbe(gpus=0, torch_cuda=None, mmcv_cuda=None)
GPU_CPU_MMCV = CudaProbe(gpus=1, torch_cuda="13.0", mmcv_cuda=None, compute_capability="9.0")
GPU_CUDA_MMCV = CudaProbe(gpus=1, torch_cuda="13.0", mmcv_cuda="13.0", compute_capability="9.0")
GPU_OLD_MMCV = CudaProbe(gpus=1, torch_cuda="13.0", mmcv_cuda="12.1", compute_capability="9.0")
GPU_WRONG_ARCH = CudaProbe(gpus=1, torch_cuda="13.0", mmcv_cuda="13.0", compute_capability="12.0",
                           op_error="RuntimeError: CUDA error: no kernel image is available for execution on the device")


def one_paragraph(message: str) -> str:
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- the decision, machine by machine


@pytest.mark.parametrize("requested, probe, device, warned", [
    ("auto", NO_GPU, "cpu", []),
    ("auto", CPU_TORCH, "cpu", []),
    ("auto", GPU_CUDA_MMCV, "cuda", []),
    ("auto", GPU_CPU_MMCV, "cpu", ["no CUDA kernels", "runs on the CPU instead", "FORCE_CUDA=1",
                                   "TORCH_CUDA_ARCH_LIST=9.0", "bash scripts/setup.sh", "nvidia-cuda-nvcc==13.0.*"]),
    ("auto", GPU_OLD_MMCV, "cpu", ["compiled with CUDA 12.1", "torch uses CUDA 13.0", "runs on the CPU instead"]),
    ("auto", GPU_WRONG_ARCH, "cpu", ["no kernel image is available", "another GPU architecture",
                                     "TORCH_CUDA_ARCH_LIST=12.0"]),
    ("cuda", GPU_CUDA_MMCV, "cuda", []),
    ("cpu", GPU_CUDA_MMCV, "cpu", []),
    ("cpu", GPU_CPU_MMCV, "cpu", []),
])
def test_choose_device(requested: str, probe: CudaProbe, device: str, warned: list[str]) -> None:
    choice = choose_device(requested, probe)
    assert choice.device == device
    if not warned:
        assert choice.warning is None
    else:
        one_paragraph(choice.warning)
        for fragment in warned:
            assert fragment in choice.warning, (fragment, choice.warning)


@pytest.mark.parametrize("requested, probe, fragments", [
    ("cuda", NO_GPU, ["--device cuda: no NVIDIA GPU is visible", "nvidia-smi", "--device cpu"]),
    ("cuda", CPU_TORCH, ["CPU-only build", "--device cpu"]),
    ("cuda", GPU_CPU_MMCV, ["--device cuda:", "no CUDA kernels", "MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0",
                            "bash scripts/setup.sh", "--device cpu"]),
    ("cuda", GPU_OLD_MMCV, ["--device cuda:", "CUDA 12.1", "bash scripts/setup.sh"]),
    ("cuda", GPU_WRONG_ARCH, ["--device cuda:", "no kernel image", "TORCH_CUDA_ARCH_LIST=12.0"]),
    ("gpu", GPU_CUDA_MMCV, ["--device gpu: choose one of auto, cuda, cpu"]),
])
def test_cuda_that_cannot_run_stops_with_one_paragraph(requested: str, probe: CudaProbe, fragments: list[str]) -> None:
    with pytest.raises(OtxliteError) as err:
        choose_device(requested, probe)
    message = one_paragraph(str(err.value))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_auto_falls_back_by_hiding_the_gpus_with_one_warning(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert use_device("auto", GPU_CPU_MMCV) == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    err = capsys.readouterr().err
    assert err.count("Warning:") == 1 and "no CUDA kernels" in err


def test_fall_back_refused_once_cuda_has_started(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # CUDA started before the GPU could be hidden
    with pytest.raises(OtxliteError, match="Run again with --device cpu"):
        use_device("auto", GPU_CPU_MMCV)


def test_only_rank_zero_warns_under_torchrun(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("RANK", "1")
    assert use_device("auto", GPU_CPU_MMCV) == "cpu"
    assert capsys.readouterr().err == ""


def test_usable_gpu_is_left_visible(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert use_device("cuda", GPU_CUDA_MMCV) == "cuda"
    assert use_device("auto", GPU_CUDA_MMCV) == "cuda"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert capsys.readouterr().err == ""


def test_cpu_needs_no_probe(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("otxlite.training.device.probe_cuda", lambda **_: pytest.fail("--device cpu probed CUDA"))
    assert use_device("cpu") == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_mmcv_build_that_crashes_when_asked_its_cuda_version_is_named(monkeypatch) -> None:
    """The version is asked in a child process: a crashing build (a segfault, as one built with the wrong
    compiler did on an H100) gives a warning that names the crash and the fix, and the trainer lives on."""
    import otxlite.training.device as device

    monkeypatch.setattr(device, "_VERSION_CHECK", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device, "_compute_capability", lambda: "9.0")
    probe = probe_cuda(run_op=False)
    assert probe.mmcv_cuda is None and "crashed the process (signal 11)" in probe.op_error
    choice = choose_device("auto", probe)
    assert choice.device == "cpu" and "CC=/usr/bin/gcc CXX=/usr/bin/g++ bash scripts/setup.sh" in choice.warning
    assert "no CUDA kernels" not in choice.warning
    with pytest.raises(OtxliteError, match="crashed the process"):
        choose_device("cuda", probe)


# ---------------------------------------------------------------- this machine, for real


def test_real_probe_reads_mmcv_and_torch() -> None:
    from mmcv.ops import get_compiling_cuda_version

    probe = probe_cuda(run_op=False)
    assert probe.torch_cuda == torch.version.cuda
    assert (probe.mmcv_cuda is None) == (get_compiling_cuda_version() == "not available")
    assert probe.op_error is None
    if probe.gpus == 0:
        assert choose_device("auto", probe) == DeviceChoice("cpu")
        with pytest.raises(OtxliteError, match="--device cuda"):
            choose_device("cuda", probe)


@pytest.mark.slow  # a fresh process imports the OpenMMLab stack
def test_op_check_reports_the_error_of_its_child_process() -> None:
    from otxlite.training.device import cuda_op_error

    error = cuda_op_error()  # mmcv's NMS and RoIAlign on the GPU, in a child process
    if torch.cuda.is_available() and probe_cuda(run_op=False).mmcv_cuda:
        assert error is None
    else:  # no GPU, or CPU-only ops: the child's last error line, e.g. "RuntimeError: Found no NVIDIA driver ..."
        assert error and "\n" not in error and "Error" in error


def otxlite(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", "TERM": "dumb"}, timeout=300)


@pytest.mark.slow  # a fresh process imports the OpenMMLab stack
def test_cli_device_cuda_without_a_usable_gpu_is_one_paragraph(tmp_path: Path) -> None:
    probe = probe_cuda(run_op=False)
    if choose_device("auto", probe).device == "cuda":
        pytest.skip("this machine can train on its GPU")
    result = otxlite("train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(tmp_path), "--device", "cuda",
                     "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert err.startswith("Error: --device cuda:") and "Traceback" not in err
    assert "\n\n" not in err
    assert not (tmp_path / "run").exists()


def test_cli_checks_params_before_the_device(tmp_path: Path) -> None:
    result = otxlite("train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(tmp_path), "--device", "cuda",
                     "--param", "learning_parameters.precision=fp8", cwd=tmp_path)
    assert result.returncode == 2
    assert "learning_parameters.precision='fp8'" in result.stderr and "auto, fp16, bf16, fp32" in result.stderr


# ---------------------------------------------------------------- precision and data loading on CUDA


def test_every_template_has_precision_auto_and_it_can_be_set() -> None:
    template = load_template("MaskRCNN-EfficientNetB2B")
    assert template.hyper_parameters["learning_parameters"]["precision"] == "auto"
    hyper = apply_overrides(template.hyper_parameters, ["learning_parameters.precision=fp32"])
    assert hyper["learning_parameters"]["precision"] == "fp32"
    with pytest.raises(OtxliteError, match="one of auto, fp16, bf16, fp32"):
        apply_overrides(template.hyper_parameters, ["learning_parameters.precision=half"])


def test_a_template_may_set_its_own_precision(tmp_path: Path) -> None:
    source = load_template("MaskRCNN-EfficientNetB2B")
    text = source.path.read_text().replace("    batch_size: 4\n", "    batch_size: 4\n    precision: bf16\n")
    text = "\n".join(f"model_config: {source.model_config}" if line.startswith("model_config:") else line
                     for line in text.splitlines())
    (tmp_path / "custom.yaml").write_text(text)
    assert load_template(str(tmp_path / "custom.yaml")).hyper_parameters["learning_parameters"]["precision"] == "bf16"


def base_config() -> dict:
    return dict(optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01),
                                   clip_grad=dict(max_norm=35.0, norm_type=2)),
                train_dataloader=dict(batch_size=2), val_dataloader=dict(batch_size=1))


@pytest.mark.parametrize("precision, cuda, wrapper, dtype", [
    ("auto", True, "AmpOptimWrapper", "float16"),
    ("fp16", True, "AmpOptimWrapper", "float16"),
    ("bf16", True, "AmpOptimWrapper", "bfloat16"),
    ("fp32", True, "OptimWrapper", None),
    ("auto", False, "OptimWrapper", None),
    ("fp32", False, "OptimWrapper", None),
])
def test_cuda_settings(precision: str, cuda: bool, wrapper: str, dtype: str | None) -> None:
    cfg = base_config()
    cuda_settings(cfg, precision, cuda)
    assert cfg["optim_wrapper"]["type"] == wrapper
    assert cfg["optim_wrapper"].get("dtype") == dtype
    assert cfg["optim_wrapper"]["clip_grad"] == dict(max_norm=35.0, norm_type=2)
    if dtype:
        assert cfg["optim_wrapper"]["loss_scale"] == "dynamic"
    assert cfg["train_dataloader"]["pin_memory"] is cuda and cfg["val_dataloader"]["pin_memory"] is cuda


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_the_cpu_is_an_error(precision: str) -> None:
    with pytest.raises(OtxliteError, match="mixed precision needs a CUDA GPU"):
        cuda_settings(base_config(), precision, cuda=False)


def test_mmengine_builds_the_amp_wrapper_otxlite_configures(monkeypatch) -> None:
    """The keys otxlite writes are the ones mmengine's AmpOptimWrapper takes (its CUDA check is the one
    thing a CPU machine has to pretend)."""
    from mmengine.optim import build_optim_wrapper

    monkeypatch.setattr("mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available", lambda: True)
    cfg = base_config()
    cuda_settings(cfg, "auto", cuda=True)
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), cfg["optim_wrapper"])
    assert type(wrapper).__name__ == "AmpOptimWrapper"
    assert wrapper.cast_dtype == torch.float16
    assert wrapper.clip_grad_kwargs == dict(max_norm=35.0, norm_type=2)


@pytest.mark.parametrize("cuda", [False, True])
def test_runner_config_on_each_device(cuda: bool, monkeypatch, tmp_path: Path) -> None:
    from otxlite.training.config import build_runner_config

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("otxlite.training.config._cuda_available", lambda: cuda)
    template = load_template("MaskRCNN-EfficientNetB2B")
    cfg = build_runner_config(template, template.hyper_parameters, ["a"], tmp_path / "t.json", tmp_path / "v.json",
                              tmp_path, num_train_images=8)
    assert cfg.optim_wrapper.type == ("AmpOptimWrapper" if cuda else "OptimWrapper")
    assert cfg.train_dataloader.pin_memory is cuda and cfg.val_dataloader.pin_memory is cuda
    fp32 = apply_overrides(template.hyper_parameters, ["learning_parameters.precision=fp32"])
    cfg = build_runner_config(template, fp32, ["a"], tmp_path / "t.json", None, tmp_path, num_train_images=8)
    assert cfg.optim_wrapper.type == "OptimWrapper"


# ---------------------------------------------------------------- weights trained on a GPU, used on the CPU


@contextlib.contextmanager
def saved_as_on_gpu() -> Iterator[None]:
    """Make ``torch.save`` record every storage at ``cuda:0``, as it does for tensors on a GPU."""
    def tagger(storage: object) -> str:
        return "cuda:0"

    def deserializer(storage: object, location: str) -> None:
        return None  # loading is left to torch's own deserializers

    torch.serialization.register_package(-100, tagger, deserializer)
    try:
        yield
    finally:
        torch.serialization._package_registry[:] = [
            entry for entry in torch.serialization._package_registry if entry[1] is not tagger]


def save_as_on_gpu(payload: object, path: Path) -> Path:
    with saved_as_on_gpu():
        torch.save(payload, path)
    with zipfile.ZipFile(path) as archive:  # the file says cuda:0, as a GPU run's checkpoint does
        assert b"cuda:0" in archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return path


def gpu_only_here() -> None:
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine a cuda:0 checkpoint loads anywhere")


def test_gpu_saved_weights_load_on_the_cpu(tmp_path: Path) -> None:
    from otxlite.core.artifacts import RECORD_FORMAT, ModelMetadata, load_weights

    state = {"backbone.conv.weight": torch.randn(4, 3, 3, 3), "head.bias": torch.randn(4)}
    record = ModelMetadata(family="mask_rcnn", labels=["a"], input_size=(64, 64), confidence_threshold=0.5)
    payload = {"otxlite_format": RECORD_FORMAT, "otxlite_version": "x", "state_dict": state, "config": {},
               "record": record.to_dict(), "metrics": {}}
    path = save_as_on_gpu(payload, tmp_path / "weights.pth")
    gpu_only_here()
    with pytest.raises(RuntimeError, match="CUDA"):  # what a loader without map_location meets on a CPU machine
        torch.load(path, weights_only=True)
    loaded = load_weights(path)
    for key, tensor in state.items():
        assert loaded.state_dict[key].device.type == "cpu"
        assert torch.equal(loaded.state_dict[key], tensor)


def test_gpu_saved_mmengine_checkpoint_loads_on_the_cpu(tmp_path: Path) -> None:
    """``--load-weights`` of an MMDetection checkpoint trained on a GPU: mmengine's loader maps it to the CPU."""
    from mmengine.runner.checkpoint import _load_checkpoint

    state = {"roi_head.bbox_head.fc_cls.weight": torch.randn(4, 8)}
    path = save_as_on_gpu({"state_dict": state, "meta": {"epoch": 12}}, tmp_path / "epoch_12.pth")
    gpu_only_here()
    loaded = _load_checkpoint(str(path), map_location="cpu")
    assert torch.equal(loaded["state_dict"]["roi_head.bbox_head.fc_cls.weight"], state["roi_head.bbox_head.fc_cls.weight"])


@pytest.mark.slow
def test_gpu_trained_weights_export_predict_and_evaluate_on_the_cpu(trained_run, exported_ir, sample_dataset: Path,
                                                                      tmp_path: Path) -> None:
    """export (and so optimize, predict and serve, which take its IR) and eval of a weights.pth whose
    tensors were on a GPU give what the same weights give from the CPU."""
    from otxlite.app.evaluate import evaluate
    from otxlite.export.pipeline import export_openvino
    from otxlite.core.images import read_image
    from otxlite.runtime.predictor import Predictor

    payload = torch.load(trained_run.weights, map_location="cpu", weights_only=True)
    gpu_weights = save_as_on_gpu(payload, tmp_path / "weights.pth")
    xml = export_openvino(gpu_weights, tmp_path / "openvino")
    image = read_image(next((sample_dataset / "images" / "val").iterdir()))
    ours, reference = Predictor(xml).predict(image), Predictor(exported_ir).predict(image)
    assert len(ours.scores) == len(reference.scores)
    np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-4)
    np.testing.assert_allclose(ours.boxes, reference.boxes, atol=1e-2)

    from otxlite.data.sample_data import make_sample_dataset

    data = make_sample_dataset(tmp_path / "data", num_train=2, num_val=2, size=128)
    gpu_metrics, _ = evaluate(gpu_weights, data, tmp_path / "eval_gpu", device="cpu")
    cpu_metrics, _ = evaluate(trained_run.weights, data, tmp_path / "eval_cpu", device="cpu")
    for key in ("mask_mAP", "bbox_mAP", "f_measure"):
        assert gpu_metrics[key] == pytest.approx(cpu_metrics[key], abs=1e-6), key

