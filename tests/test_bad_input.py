"""Bad templates, model configs and hyper-parameters get one paragraph before any run folder is made;
a failed write names its path and leaves nothing half-written; a killed trainer leaves no workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otxlite.core.fileio import write_text_atomic

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "instance_segmentation" / "maskrcnn_resnet18.yaml"


def otxlite(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, **kwargs)


def user_template(tmp_path: Path, config: str) -> Path:
    """A copy of the ResNet-18 template pointing at a model config with the given text."""
    (tmp_path / "my_config.py").write_text(config)
    text = TEMPLATE.read_text().replace("../../configs/instance_segmentation/maskrcnn_resnet18.py", "my_config.py")
    path = tmp_path / "my_template.yaml"
    path.write_text(text)
    return path


BASE = "_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'\n"
CASES = {
    "syntax error": (BASE + "model = dict(backbone=dict(depth=18,)\n", ["my_config.py", "line", "syntax"]),
    "unknown type": (BASE + "model = dict(type='MaskRCNNX')\n", ["'MaskRCNNX'", "Did you mean MaskRCNN"]),
    "missing _base_": ("_base_ = './not_there.py'\n", ["not_there.py", "_base_"]),
    "no model": ("x = 1\n", ["no `model`"]),
    "no num_classes": ("model = dict(type='DetDataPreprocessor')\n", ["num_classes"]),
}


@pytest.mark.slow  # each case imports the OpenMMLab stack in a fresh process (5-12 s)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_config_is_one_paragraph_before_the_run_folder(case: str, sample_dataset: Path,
                                                                 tmp_path: Path) -> None:
    config, expected = CASES[case]
    template = user_template(tmp_path, config)
    out = tmp_path / "run"
    result = otxlite("train", str(template), "--train-data-roots", str(sample_dataset), "-o", str(out))
    assert result.returncode == 2, result.stderr
    for text in expected:
        assert text.lower() in result.stderr.lower(), (text, result.stderr)
    assert "Traceback" not in result.stderr
    assert not out.exists(), "the run folder is only made once the template and config are valid"


@pytest.mark.parametrize("param, expected", [
    ("data.input_size=[100,-5]", "multiple of 32"),
    ("learning_parameters.learning_rate=-1", "> 0"),
    ("learning_parameters.batch_size=0", ">= 1"),
    ("learning_parameters.num_workers=-2", ">= 0"),
    ("postprocessing.confidence_threshold=1.5", "<= 1"),
    ("learning_parameters.early_stop_patience=-1", ">= 0"),
    ("optimization.preset=fast", "one of performance, mixed"),
    ("data.augmentation=cutmix", "one of auto, mosaic, plain"),
])
def test_out_of_range_hyper_parameter(param: str, expected: str, tmp_path: Path) -> None:
    template = "RTMDet-Ins-tiny" if param.startswith("data.augmentation") else "MaskRCNN-ResNet18"
    result = otxlite("train", template, "--train-data-roots", str(tmp_path), "--param", param,
                     "-o", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "out of range" in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow  # the device check imports torch in a fresh process
def test_mixed_precision_on_the_cpu_stops_before_the_run_folder(tmp_path: Path) -> None:
    result = otxlite("train", "MaskRCNN-ResNet18", "--train-data-roots", str(tmp_path), "--device", "cpu",
                     "--param", "learning_parameters.precision=fp16", "-o", str(tmp_path / "run"))
    assert result.returncode == 2 and "mixed precision needs a CUDA GPU" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_template_with_out_of_range_default(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE.read_text().replace("confidence_threshold: 0.35", "confidence_threshold: 3.5")
                    .replace("../../configs", str(TEMPLATE.parents[2] / "configs")))
    result = otxlite("train", str(path), "--train-data-roots", str(tmp_path))
    assert result.returncode == 2 and "confidence_threshold=3.5 is out of range" in result.stderr


def test_failed_write_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails half way (here: a file-size limit, which stops root too, like a full disk) keeps the
    old file under its name, leaves no temporary file, and says which path could not be written."""
    target = tmp_path / "weights.json"
    write_text_atomic(target, "old")
    code = ("import resource, signal, sys; from otxlite.core.fileio import write_text_atomic; "
            "from otxlite.core.errors import OtxliteError; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "try:\n    write_text_atomic(sys.argv[1], 'x' * 5000)\n"
            "except OtxliteError as err:\n    print(err)\n    sys.exit(2)")
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert f"Cannot write {target}" in result.stdout and "It needs at least 5,000 bytes" in result.stdout
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.json"]


FULL_DISK_WRITES = {
    # weights.pth: serialized first, so the paragraph knows the bytes it needs
    "weights.pth": ("import torch; from otxlite.core.artifacts import ModelMetadata, save_weights; save_weights("
                    "target, {'w': torch.zeros(500, 500)}, {}, ModelMetadata('mask_rcnn', ['a'], (64, 64), 0.5))",
                    "It needs at least 1,00"),
    # an IR pair: the weights' bytes (the .xml adds a little)
    "openvino.xml": ("import numpy as np, openvino as ov; from openvino import opset13 as ops; "
                     "from otxlite.core.fileio import save_ir_atomic; x = ops.parameter([1, 500], np.float32); "
                     "save_ir_atomic(ov.Model([ops.matmul(x, ops.constant(np.ones((500, 500), np.float32)), False, "
                     "False)], [x]), target)", "It needs at least 1,000,000 bytes"),
}


@pytest.mark.parametrize("name", sorted(FULL_DISK_WRITES))
def test_full_disk_keeps_the_previous_model_file(name: str, tmp_path: Path) -> None:
    """A file-size limit (it stops root too, like a full disk) while writing a model: the previous file stays
    whole, nothing half-written is left, and the paragraph names the path and the bytes."""
    target = tmp_path / name
    target.write_text("previous")
    snippet, expected = FULL_DISK_WRITES[name]
    code = ("import resource, signal, sys; from pathlib import Path; from otxlite.core.errors import OtxliteError; "
            "target = Path(sys.argv[1])\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))\n"
            f"try:\n    {snippet}\nexcept OtxliteError as err:\n    print(err)\n    sys.exit(2)")
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"Cannot write {target}" in result.stdout and expected in result.stdout and "bytes are free" in result.stdout
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.slow
def test_killed_trainer_leaves_no_workers(sample_dataset: Path, tmp_path: Path) -> None:
    """kill -9 of a training run with 2 DataLoader workers: no process of it is left a few seconds later."""
    args = [sys.executable, "-m", "otxlite.cli", "train", "MaskRCNN-ResNet18", "--train-data-roots",
            str(sample_dataset), "-o", str(tmp_path / "run"), "--no-pretrained",
            "--param", "learning_parameters.num_iters=50", "--param", "learning_parameters.num_workers=2",
            "--param", "data.input_size=[128,128]", "--param", "learning_parameters.batch_size=2"]
    trainer = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def children() -> list[int]:
        found = subprocess.run(["pgrep", "-g", str(trainer.pid)], capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found if int(pid) != trainer.pid]

    deadline = time.time() + 180
    while len(children()) < 2 and time.time() < deadline and trainer.poll() is None:
        time.sleep(0.5)
    assert len(children()) >= 2, "the trainer never started its DataLoader workers"
    workers = children()
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait()
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    orphans = [pid for pid in workers if _alive(pid)]
    for pid in orphans:  # don't leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not orphans


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_ir_that_cannot_be_written_names_its_path(tmp_path: Path) -> None:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from otxlite.core.errors import OtxliteError
    from otxlite.core.fileio import save_ir_atomic

    x = ops.parameter([1, 3], np.float32)
    model = ov.Model([ops.result(ops.relu(x))], [x], "tiny")
    (tmp_path / "not_a_folder").write_text("")
    with pytest.raises(OtxliteError, match="Cannot write .*not_a_folder/openvino.xml"):
        save_ir_atomic(model, tmp_path / "not_a_folder" / "openvino.xml")
    assert save_ir_atomic(model, tmp_path / "openvino.xml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder", "openvino.bin", "openvino.xml"]


@pytest.mark.slow
def test_load_weights_that_would_run_code_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    """`getattr` is allowed only when resuming the user's own run: a foreign --load-weights file that needs it
    (as a crafted pickle would) is refused in one paragraph instead of being unpickled."""
    import torch

    checkpoint = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}, "hook": getattr}, checkpoint)
    result = otxlite("train", "MaskRCNN-ResNet18", "--train-data-roots", str(tiny_dataset), "-o", str(tmp_path / "run"),
                     "--load-weights", str(checkpoint), "--param", "learning_parameters.num_workers=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "otxlite runs no code from a file it did not write" in result.stderr and "getattr" in result.stderr
    assert "--resume-from" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("error, code, fragment", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 8589934592 bytes."), 2, "Out of memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), 2, "learning_parameters.batch_size"),
    (MemoryError(), 2, "Out of memory (MemoryError)"),
    (OSError(28, "No space left on device", "/runs/a/models/last.pth"), 2, "disk is full writing /runs/a/models/last.pth"),
    (ValueError("an otxlite bug"), 3, "This is a bug in otxlite"),
])
def test_failures_from_the_machines_limits_are_the_users_to_fix(error: BaseException, code: int, fragment: str,
                                                                monkeypatch, capsys) -> None:
    """Out of memory and a full disk, raised from deep inside a verb, end in one paragraph that says what to
    change (exit 2); anything else is reported as otxlite's bug (exit 3). No traceback either way."""
    import otxlite.cli as cli

    def verb(**_: object) -> None:
        raise error

    monkeypatch.setattr(cli, "app", verb)
    monkeypatch.setattr(sys, "argv", ["otxlite", "train"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == code and fragment in " ".join(err.split()), err
    assert "Traceback" not in err
