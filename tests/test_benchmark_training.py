"""scripts/benchmark_training.py without training: the plain config, the timing arithmetic, the table."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_training.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_config_is_otxlite_config_without_otxlite(bench, tmp_path: Path) -> None:
    from mmengine.config import Config

    from otxlite.training.config import build_runner_config
    from otxlite.core.templates import apply_overrides, load_template

    template = load_template("MaskRCNN-ConvNeXt")  # the one template with a custom import of its own
    path = bench.plain_config(template, 128, 2, 0, tmp_path / "train.json", ["a", "b"], tmp_path / "plain.py")
    plain = Config.fromfile(str(path))
    hyper = apply_overrides(template.hyper_parameters, [
        "learning_parameters.num_iters=1", "data.input_size=[128,128]", "learning_parameters.batch_size=2",
        "learning_parameters.num_workers=0"])
    otx = build_runner_config(template, hyper, ["a", "b"], tmp_path / "train.json", None, tmp_path,
                              num_train_images=8, pretrained_start="random")

    assert plain.train_dataloader.dataset.type == "CocoDataset"
    assert plain.custom_imports.imports == ["otxlite.models"]
    assert "val_dataloader" not in plain and plain.default_hooks.checkpoint.type == "CheckpointHook"
    assert [hook["type"] for hook in plain.custom_hooks] == ["EMAHook"]
    for key in ("model", "optim_wrapper", "param_scheduler", "train_cfg", "randomness"):
        assert plain[key] == otx[key], key
    assert plain.train_dataloader.dataset.pipeline == otx.train_dataloader.dataset.pipeline
    assert plain.train_dataloader.batch_size == 2


def test_timing_window_leaves_out_warmup_and_epoch_end(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.chain([10.0, 12.0, 13.0, 14.5, 16.0, 20.0], itertools.repeat(99.0))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    hook = bench._timing_hook(warmup=2)
    hook.before_train_epoch(SimpleNamespace(hooks=[hook]))  # t=10
    for batch in (2, 2, 2, 1):  # iterations end at 12, 13, 14.5, 16
        hook.after_train_iter(None, 0, data_batch={"inputs": [0] * batch}, outputs={"loss": 1.5})
    hook.after_train_epoch(None)  # t=20
    result = hook.result()
    assert result["timed_images"] == 3 and result["timed_s"] == 3.0 and result["images_per_s"] == 1.0
    assert result["iter_s"] == [2.0, 1.0, 1.5, 1.5] and result["epoch_end_s"] == 4.0
    assert result["first_loss"] == 1.5 and result["timed_cpu_s"] >= 0


def test_too_few_iterations_is_a_clear_error(bench) -> None:
    hook = bench._timing_hook(warmup=2)
    hook.before_train_epoch(SimpleNamespace(hooks=[]))
    hook.after_train_iter(None, 0, data_batch={"inputs": [0]}, outputs={})
    with pytest.raises(SystemExit, match="--warmup"):
        hook.result()


def test_table_and_arguments(bench) -> None:
    side = dict(images_per_s=2.0, cpu_s_per_image=1.0, peak_rss_mib=900.0, worker_peak_rss_mib=700.0, epoch_end_s=0.5, first_loss=3.0,
                hook_ms_per_iter={"ProgressHook.after_train_iter": 0.1}, hook_s={})
    row = dict(template="T", input_size=128, batch_size=2, otxlite=side, plain={**side, "images_per_s": 2.1},
               overhead=1.05, overhead_cpu=1.01)
    text = bench.table([row])
    assert "| T | 128 | 2 | 2.000 | 2.100 | 1.050 | 1.010 |" in text and "| yes |" in text
    assert "ProgressHook.after_train_iter 0.10/0.10" in text
    assert bench.parse_args(["--sizes", "default", "256"]).sizes == ["default", "256"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "big"])
