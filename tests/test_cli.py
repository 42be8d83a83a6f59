"""Fast tests of the ``otxlite`` command line (no training): help, version, find and error messages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otxlite import __version__
from otxlite.core.templates import list_templates

HELP_BUDGET_S = 1.0  # `otxlite --help` returns in under 1 second
LOAD_SLACK_S = 2.0  # extra allowance on a loaded test machine


def otxlite(*args: str, cwd: Path | None = None, timeout: float = 120, columns: str = "200"
            ) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=columns, TERM="dumb")
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "otxlite.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """A user error: exit code 2, one 'Error:' paragraph on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("Error:"), err
    assert "Traceback" not in result.stderr + result.stdout
    assert "\n\n" not in err, "the message should be one paragraph"
    flat = " ".join(err.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, err)
    return flat


def test_help_is_fast_and_lists_the_verbs():
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        result = otxlite("--help")
        timings.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
    for verb in ("train", "eval", "find"):
        assert verb in result.stdout
    best = min(timings)
    print(f"otxlite --help: best {best:.2f} s of {', '.join(f'{t:.2f}' for t in timings)}")
    assert best < HELP_BUDGET_S + LOAD_SLACK_S, timings


def test_importing_the_cli_does_not_import_the_heavy_stack():
    code = ("import sys, otxlite.cli; "
            "heavy = sorted(m for m in ('torch', 'mmdet', 'mmengine', 'mmcv', 'openvino', 'nncf', 'datumaro', 'cv2') "
            "if m in sys.modules); print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_arguments_shows_help():
    result = otxlite()
    assert "Usage" in result.stdout + result.stderr
    assert "train" in result.stdout + result.stderr


def test_version():
    result = otxlite("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"otxlite {__version__}"


@pytest.mark.parametrize("verb", ["train", "eval", "find"])
def test_verb_help(verb):
    result = otxlite(verb, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_find_keeps_names_whole_when_piped_at_80_columns():
    result = subprocess.run([sys.executable, "-m", "otxlite.cli", "find"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for template in list_templates():
        assert any(f" {template.name} " in line for line in result.stdout.splitlines()), template.name


def test_find_lists_all_templates_with_stats():
    result = otxlite("find")
    assert result.returncode == 0, result.stderr
    templates = list_templates()
    assert len(templates) == 11
    for template in templates:
        row = next((line for line in result.stdout.splitlines() if f" {template.name} " in line), None)
        assert row is not None, (template.name, result.stdout)
        assert template.model_template_id in row
        assert f"{template.gigaflops:.1f}" in row and f"{template.size:.1f}" in row
        assert (" COCO " in row) == (template.name in ("MaskRCNN-ResNet50", "MaskRCNN-ResNet101", "MaskRCNN-ConvNeXt",
                                                       "SOLOv2", "RTMDet-Ins-tiny", "RTMDet-Ins-s")), row


# console width -> (a table is drawn, ids are shown): narrow drops the id and path columns; narrower than
# the name, numbers and start, one plain line per template again.
TERMINAL_LAYOUTS = {200: (True, True), 80: (True, False), 40: (False, True)}


@pytest.mark.parametrize("width", list(TERMINAL_LAYOUTS))
def test_find_keeps_names_whole_at_any_width(width):
    from rich.console import Console

    from otxlite.app.find import print_templates

    console = Console(force_terminal=True, width=width, color_system=None, record=True)
    print_templates(list_templates(), console)
    lines = console.export_text().splitlines()
    table, ids = TERMINAL_LAYOUTS[width]
    assert not any("…" in line for line in lines)
    assert any("┃ name" in line for line in lines) == table
    if table:
        assert max(len(line) for line in lines) <= width
    for template in list_templates():
        assert sum(template.name in line for line in lines) == 1, (template.name, lines)
        assert any(template.model_template_id in line for line in lines) == ids


def test_train_unknown_template(tmp_path):
    result = otxlite("train", "NoSuchModel", "--train-data-roots", str(tmp_path), "-o", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert_user_error(result, "Unknown template 'NoSuchModel'", "otxlite find")
    assert not (tmp_path / "run").exists()


def test_train_unknown_param_lists_valid_keys(tmp_path):
    result = otxlite("train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(tmp_path),
                     "--param", "nope.x=1", "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "unknown key 'nope.x'", "Valid keys:", "learning_parameters.num_iters",
                      "data.input_size")


def test_train_bad_param_type_names_the_key(tmp_path):
    result = otxlite("train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(tmp_path),
                     "--param", "learning_parameters.num_iters=many", "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "--param learning_parameters.num_iters=", "wrong type")


@pytest.mark.slow  # a fresh process imports the OpenMMLab stack
def test_train_missing_data_folder(tmp_path):
    missing = tmp_path / "no_such_dataset"
    result = otxlite("train", "MaskRCNN-EfficientNetB2B", "--train-data-roots", str(missing),
                     "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "--train-data-roots", str(missing), "does not exist")


@pytest.mark.slow  # a fresh process imports torch for the device check
def test_train_resume_from_a_missing_checkpoint(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.json").write_text("{}")
    result = otxlite("train", "MaskRCNN-ResNet18", "--train-data-roots", str(tmp_path / "data"),
                     "--resume-from", str(tmp_path / "gone" / "last.pth"), cwd=tmp_path)
    assert_user_error(result, "--resume-from", "last.pth: the file does not exist")
    assert not (tmp_path / "gone").exists()


def test_eval_missing_weights(tmp_path):
    result = otxlite("eval", "--load-weights", "missing.pth", "--test-data-roots", str(tmp_path),
                     "-o", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "--load-weights missing.pth", "does not exist")


def test_verbose_shows_the_traceback(tmp_path):
    result = otxlite("train", "NoSuchModel", "--train-data-roots", str(tmp_path), "--verbose", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "OtxliteError" in result.stderr
    assert "Error: Unknown template 'NoSuchModel'" in " ".join(result.stderr.split())
