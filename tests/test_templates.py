"""Tests for template loading, validation and ``--param`` overrides (otxlite/core/templates.py), the shipped
templates and their model configs, and scripts/compute_model_stats.py's template rewriting."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from otxlite.core.errors import OtxliteError
from otxlite.core.templates import apply_overrides, list_templates, load_template, load_template_file, template_paths

ROOT = Path(__file__).resolve().parents[1]
STATS_SCRIPT = ROOT / "scripts" / "compute_model_stats.py"
EXPECTED_NAMES = {
    "MaskRCNN-EfficientNetB2B", "MaskRCNN-ResNet50", "MaskRCNN-ConvNeXt", "SOLOv2",
    "MaskRCNN-ResNet18", "MaskRCNN-ResNet34", "MaskRCNN-ResNet101", "MaskRCNN-ResNet152", "RTMDet-Ins-tiny",
    "RTMDet-Ins-s", "YOLACT-MobileNetV2",
}
TEMPLATE_PATHS = template_paths()


def stats_script():
    """scripts/compute_model_stats.py as a module."""
    spec = importlib.util.spec_from_file_location("compute_model_stats", STATS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hyper_parameters():
    return load_template("MaskRCNN-EfficientNetB2B").hyper_parameters


# ---------------------------------------------------------------- (a) shipped templates and configs


def test_all_templates_are_shipped():
    assert {t.name for t in list_templates()} == EXPECTED_NAMES
    ids = [t.model_template_id for t in list_templates()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=[p.stem for p in TEMPLATE_PATHS])
def test_template_config_loads_and_model_builds(path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config, ConfigDict
    from mmengine.utils import import_modules_from_strings

    from otxlite.training.config import drop_pretrained, load_model_config, pretrained_checkpoints

    template = load_template(str(path))
    assert template.task_type == "INSTANCE_SEGMENTATION"
    assert template.model_config.is_file()
    width, height = template.hyper_parameters["data"]["input_size"]
    assert width > 0 and height > 0
    assert "model" in Config.fromfile(str(template.model_config))

    model_cfg, imports = load_model_config(template, num_classes=3)
    assert pretrained_checkpoints(model_cfg), "every template starts from ImageNet weights"
    drop_pretrained(model_cfg)
    assert not pretrained_checkpoints(model_cfg)
    register_all_modules()
    if imports:
        import_modules_from_strings(imports)
    model = MODELS.build(ConfigDict(model_cfg))
    if hasattr(model, "roi_head"):  # Mask R-CNN
        heads = (model.roi_head.bbox_head, model.roi_head.mask_head)
    else:  # SOLOv2 (mask_head), RTMDet-Ins (bbox_head)
        heads = (getattr(model, "mask_head", None) or model.bbox_head,)
    assert [head.num_classes for head in heads] == [3] * len(heads)


# ---------------------------------------------------------------- (b) load_template


def test_load_by_path_id_and_name_case_insensitive():
    by_path = load_template(str(ROOT / "templates" / "instance_segmentation" / "maskrcnn_resnet50.yaml"))
    assert by_path.name == "MaskRCNN-ResNet50"
    assert load_template("Custom_Instance_Segmentation_MaskRCNN_ResNet50") == by_path
    assert load_template("custom_instance_segmentation_maskrcnn_resnet50") == by_path
    assert load_template("MaskRCNN-ResNet50") == by_path
    assert load_template("maskrcnn-resnet50") == by_path
    assert load_template("SOLOV2").name == "SOLOv2"


def test_unknown_template_suggests_close_names():
    with pytest.raises(OtxliteError) as err:
        load_template("MaskRCNN-ResNet5")
    message = str(err.value)
    assert "Unknown template 'MaskRCNN-ResNet5'" in message
    assert "Did you mean" in message and "MaskRCNN-ResNet50" in message
    assert "otxlite find" in message


def test_missing_template_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(OtxliteError, match="does not exist"):
        load_template(str(missing))


def _write_template(tmp_path: Path, **changes) -> Path:
    source = ROOT / "templates" / "instance_segmentation" / "maskrcnn_efficientnetb2b.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["model_config"] = str(ROOT / "configs" / "instance_segmentation" / "maskrcnn_efficientnetb2b.py")
    raw.update(changes)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_custom_template_file_loads(tmp_path):
    template = load_template(str(_write_template(tmp_path, name="Mine")))
    assert template.name == "Mine"
    assert template.model_config.name == "maskrcnn_efficientnetb2b.py"


def test_missing_model_config_names_the_path(tmp_path):
    path = _write_template(tmp_path, model_config="configs/does_not_exist.py")
    with pytest.raises(OtxliteError) as err:
        load_template(str(path))
    message = str(err.value)
    assert str(tmp_path / "configs" / "does_not_exist.py") in message
    assert "model_config" in message


def test_unknown_family_lists_the_families(tmp_path):
    path = _write_template(tmp_path, family="yolo")
    with pytest.raises(OtxliteError, match="`family: yolo` is unknown; it must be one of mask_rcnn, solov2, "
                                           "rtmdet_ins, yolact"):
        load_template(str(path))


def test_the_family_decides_the_recipe_and_the_size_rule(tmp_path):
    from otxlite.families.family import MOSAIC_ADAMW, SGD_PLATEAU

    assert load_template("RTMDet-Ins-tiny").family.recipe == MOSAIC_ADAMW
    assert load_template("SOLOv2").family.recipe == SGD_PLATEAU
    yolact = load_template(str(_write_template(tmp_path, family="yolact")))
    assert yolact.family.input_size_multiple == 1


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\nmodel_config: x.py\n")
    with pytest.raises(OtxliteError, match="not valid YAML"):
        load_template(str(path))


@pytest.mark.parametrize("text", ["- a list\n- not a mapping\n", "name: only-a-name\n"])
def test_template_without_required_keys(tmp_path, text):
    path = tmp_path / "partial.yaml"
    path.write_text(text)
    with pytest.raises(OtxliteError, match="model_template_id"):
        load_template(str(path))


# ---------------------------------------------------------------- (c) apply_overrides


def test_override_nested_key_leaves_original_untouched(hyper_parameters):
    before = yaml.safe_dump(hyper_parameters)
    result = apply_overrides(hyper_parameters, ["learning_parameters.num_iters=2", "learning_parameters.batch_size=1"])
    assert result["learning_parameters"]["num_iters"] == 2
    assert result["learning_parameters"]["batch_size"] == 1
    assert result["data"] == hyper_parameters["data"]
    assert yaml.safe_dump(hyper_parameters) == before


def test_override_values_are_parsed_as_yaml(hyper_parameters):
    result = apply_overrides(hyper_parameters, [
        "data.input_size=[320,320]",
        "learning_parameters.use_ema=false",
        "postprocessing.result_based_confidence_threshold=true",
        "learning_parameters.learning_rate=0.01",
        "optimization.preset=performance",
    ])
    assert result["data"]["input_size"] == [320, 320]
    assert result["learning_parameters"]["use_ema"] is False
    assert result["postprocessing"]["result_based_confidence_threshold"] is True
    assert result["learning_parameters"]["learning_rate"] == pytest.approx(0.01)
    assert result["optimization"]["preset"] == "performance"


def test_override_int_accepted_for_float(hyper_parameters):
    result = apply_overrides(hyper_parameters, ["learning_parameters.learning_rate=1"])
    value = result["learning_parameters"]["learning_rate"]
    assert value == 1.0 and isinstance(value, float)


def test_override_unknown_key_lists_valid_keys_and_suggests(hyper_parameters):
    with pytest.raises(OtxliteError) as err:
        apply_overrides(hyper_parameters, ["learning_parameters.num_iter=2"])
    message = str(err.value)
    assert "unknown key 'learning_parameters.num_iter'" in message
    assert "Similar keys: learning_parameters.num_iters" in message
    valid = message.split("Valid keys:", 1)[1]
    for key in ("learning_parameters.batch_size", "data.input_size", "postprocessing.confidence_threshold",
                "optimization.preset"):
        assert key in valid


def test_override_of_a_section_is_an_unknown_key(hyper_parameters):
    with pytest.raises(OtxliteError, match="Valid keys"):
        apply_overrides(hyper_parameters, ["data=1"])


@pytest.mark.parametrize("param, key", [
    ("learning_parameters.num_iters=abc", "learning_parameters.num_iters"),
    ("learning_parameters.num_iters=2.5", "learning_parameters.num_iters"),
    ("learning_parameters.use_ema=1", "learning_parameters.use_ema"),
    ("learning_parameters.learning_rate=fast", "learning_parameters.learning_rate"),
    ("data.input_size=320", "data.input_size"),
    ("data.input_size=[320]", "data.input_size"),
    ("data.input_size=[320,abc]", "data.input_size"),
])
def test_override_bad_type_names_the_key(hyper_parameters, param, key):
    with pytest.raises(OtxliteError) as err:
        apply_overrides(hyper_parameters, [param])
    assert f"--param {key}=" in str(err.value)
    assert "wrong type" in str(err.value)


@pytest.mark.parametrize("param", ["learning_parameters.num_iters", "=3", "  =3"])
def test_override_without_key_value_form(hyper_parameters, param):
    with pytest.raises(OtxliteError, match="KEY=VALUE"):
        apply_overrides(hyper_parameters, [param])


def test_override_unparsable_yaml_value(hyper_parameters):
    with pytest.raises(OtxliteError, match="cannot parse"):
        apply_overrides(hyper_parameters, ["data.input_size=[320,"])


# ---------------------------------------------------------------- (d) gigaflops and size


@pytest.mark.parametrize("path", TEMPLATE_PATHS, ids=[p.stem for p in TEMPLATE_PATHS])
def test_template_has_computed_gigaflops_and_size(path):
    template = load_template(str(path))
    for value in (template.gigaflops, template.size):
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    text = path.read_text()
    assert "scripts/compute_model_stats.py" in text  # the template says where its numbers come from


@pytest.mark.slow
def test_stored_sizes_match_the_models():
    """Sizes need no forward pass; GFLOPs at full input size are checked by the script itself (minutes)."""
    result = subprocess.run([sys.executable, str(STATS_SCRIPT), "--check", "--size-only"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rewrite_stats_changes_only_the_stats_lines():
    module = stats_script()
    original = (ROOT / "templates" / "instance_segmentation" / "solov2_light_r50.yaml").read_bytes().decode()
    for text in (original, original.replace("\n", "\r\n")):
        rewritten = module.rewrite_stats(text, 12.345, 6.789)
        old, new = text.splitlines(keepends=True), rewritten.splitlines(keepends=True)
        kept = [line for line in old if not line.startswith(("gigaflops:", "size:", "#"))]
        assert [line for line in new if not line.startswith(("gigaflops:", "size:", "#"))] == kept
        raw = yaml.safe_load(rewritten)
        assert raw["gigaflops"] == 12.35 and raw["size"] == 6.79
        assert module.rewrite_stats(rewritten, 12.345, 6.789) == rewritten  # idempotent
        assert module.rewrite_stats(rewritten, None, 1.0).count("gigaflops: 12.35") == 1  # None keeps GFLOPs
        newline = "\r\n" if "\r\n" in text else "\n"
        assert all(line.endswith(newline) for line in new)


def test_a_built_wheel_carries_the_templates_and_their_configs(tmp_path: Path) -> None:
    """A non-editable install (a wheel) finds every template and its model config in the package data."""
    import json
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(ROOT / "otxlite", source / "otxlite", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    zipfile.ZipFile(next((tmp_path / "dist").glob("otxlite-*.whl"))).extractall(tmp_path / "site")
    check = ("import json, otxlite; from otxlite.core.templates import list_templates; ts = list_templates(); "
             "print(json.dumps([otxlite.__file__, sorted(t.name for t in ts if t.model_config.is_file())]))")
    result = subprocess.run([sys.executable, "-c", check], env={"PYTHONPATH": str(tmp_path / "site")},
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    package, names = json.loads(result.stdout)
    assert Path(package).parent == tmp_path / "site" / "otxlite"
    assert names == sorted(EXPECTED_NAMES)


def test_optimize_takes_unset_options_from_the_model_record(tmp_path):
    """The template's optimization block, completed with the defaults and with the run's --param overrides, is
    carried by the model record (through weights.pth) to `otxlite optimize`, which fills unset options from it."""
    from otxlite.core.artifacts import ModelMetadata
    from otxlite.quantization.int8 import Int8Settings, int8_settings
    from otxlite.training.config import model_record

    hyper = yaml.safe_load((ROOT / "templates/instance_segmentation/maskrcnn_efficientnetb2b.yaml").read_text())
    hyper = hyper["hyper_parameters"]
    hyper["optimization"] = {"subset_size": 50}
    mine = load_template_file(_write_template(tmp_path, model_template_id="Mine_1", hyper_parameters=hyper))
    run = apply_overrides(mine.hyper_parameters, ["optimization.preset=performance"])
    record = ModelMetadata.from_dict(model_record(mine, run, ["a"], {"test_cfg": {}}, None).to_dict())
    assert record.optimization_settings == {"subset_size": 50, "preset": "performance", "max_accuracy_drop": 0.01}
    assert int8_settings(record) == Int8Settings(50, "performance", 0.01)
    assert int8_settings(record, 7, "mixed", 0.02) == Int8Settings(7, "mixed", 0.02)
    with pytest.raises(OtxliteError, match="--preset fast: choose performance or mixed"):
        int8_settings(record, preset="fast")
