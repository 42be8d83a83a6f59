"""otxlite export: weights.pth -> OpenVINO IR that runs with OpenVINO alone and loads in OpenVINO Model API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FAST_PARAMS, slow_fixture
from otxlite.core.errors import OtxliteError
from otxlite.export.pipeline import export_openvino
from otxlite.export.onnx_shim import torchscript_onnx_export

LABELS = ["disc", "star", "ring"]
MODEL_INFO_KEYS = {"model_type", "task_type", "labels", "label_ids", "confidence_threshold", "iou_threshold",
                   "mean_values", "scale_values", "reverse_input_channels", "resize_type", "pad_value"}
OTXLITE_KEYS = {"format", "version", "template_id", "family", "labels", "input_size", "mask_layout", "box_source",
                "mask_values", "mask_threshold", "precision", "optimization_settings"}
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # CPUs with bf16 units otherwise run an FP32 IR in bf16


@slow_fixture(scope="module")
def solov2_ir(tiny_dataset, tmp_path_factory) -> Path:
    from otxlite.app.train import train

    run = train("SOLOv2", tiny_dataset, output=tmp_path_factory.mktemp("solo"), pretrained=False,
                params=[p for p in FAST_PARAMS if not p.startswith("data.input_size")]
                + ["data.input_size=[96,96]", "learning_parameters.num_iters=1"])
    return export_openvino(run.weights, tmp_path_factory.mktemp("solo_ir"))


def val_image(dataset: Path) -> np.ndarray:
    return cv2.imread(str(sorted((dataset / "images" / "val").glob("*.jpg"))[0]))


def read_ir(xml: Path):
    import openvino as ov

    return ov.Core().read_model(str(xml))


def info(model, section: str, key: str) -> str:
    return model.get_rt_info([section, key]).astype(str)


def run_ir(xml: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """What otxlite's predictor does: resize to the input size, NCHW, no normalisation."""
    import openvino as ov

    model = read_ir(xml)
    width, height = (int(v) for v in info(model, "otxlite", "input_size").split())
    compiled = ov.Core().compile_model(model, "CPU", F32)
    out = compiled(cv2.resize(image, (width, height)).transpose(2, 0, 1)[None])
    return {name: out[name] for name in ("boxes", "labels", "masks")}


# --- the dynamo=False shim ------------------------------------------------------------------------------------


def test_shim_passes_dynamo_false_and_restores(monkeypatch) -> None:
    import torch.onnx

    calls = []
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: calls.append((args, kwargs)))
    fake = torch.onnx.export
    with torchscript_onnx_export():
        assert torch.onnx.export is not fake
        torch.onnx.export("model", ("x",), "f.onnx", opset_version=11)
    assert torch.onnx.export is fake
    assert calls == [(("model", ("x",), "f.onnx"), {"opset_version": 11, "dynamo": False})]


def test_shim_restores_on_error(monkeypatch) -> None:
    import torch.onnx

    def failing(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(RuntimeError, match="exporter failed"), torchscript_onnx_export():
        torch.onnx.export("model", ())
    assert torch.onnx.export is failing


# --- errors ----------------------------------------------------------------------------------------------------


def test_export_rejects_a_file_that_is_not_weights(tmp_path) -> None:
    bogus = tmp_path / "weights.pth"
    bogus.write_text("not a checkpoint")
    with pytest.raises(OtxliteError, match="weights.pth"):
        export_openvino(bogus, tmp_path / "out")
    assert not (tmp_path / "out" / "openvino.xml").exists()


def test_model_spec_takes_the_family_and_size_from_the_record() -> None:
    from mmengine.config import Config

    from otxlite.core.artifacts import ModelMetadata
    from otxlite.export.mmdeploy_onnx import model_spec

    config = Config(dict(model=dict(type="MaskRCNN", data_preprocessor=dict(mean=[1, 2, 3], std=[4, 5, 6],
                                                                             bgr_to_rgb=True))))
    record = ModelMetadata(family="solov2", labels=["a"], input_size=(320, 192), confidence_threshold=0.3)
    spec = model_spec(config, record)
    assert (spec.family.name, spec.input_size, spec.mean, spec.std, spec.bgr_to_rgb) == (
        "solov2", (320, 192), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), True)


# --- Mask R-CNN --------------------------------------------------------------------------------------------------


def test_export_writes_ir_and_label_schema(exported_ir: Path) -> None:
    assert exported_ir.name == "openvino.xml"
    assert exported_ir.with_suffix(".bin").stat().st_size > 1_000_000
    schema = json.loads((exported_ir.parent / "label_schema.json").read_text())
    assert [entry["name"] for entry in schema["labels"]] == LABELS
    assert not list(exported_ir.parent.glob(".export-*")), "the work folder is removed"


def test_ir_signature_and_metadata(exported_ir: Path, trained_run) -> None:
    from otxlite.core.artifacts import load_weights, read_metadata

    model = read_ir(exported_ir)
    assert [tuple(p.shape) for p in model.inputs] == [(1, 3, 128, 128)]
    outputs = {o.get_any_name(): o.get_partial_shape() for o in model.outputs}
    assert set(outputs) == {"boxes", "labels", "masks"}
    assert outputs["boxes"].rank.get_length() == 2 and outputs["boxes"][1].get_length() == 5
    assert outputs["labels"].rank.get_length() == 1
    assert [d.get_length() for d in list(outputs["masks"])[1:]] == [28, 28]

    assert MODEL_INFO_KEYS <= set(model.get_rt_info()["model_info"].keys())
    assert OTXLITE_KEYS <= set(model.get_rt_info()["otxlite"].keys())
    assert info(model, "model_info", "model_type") == "MaskRCNN"
    assert info(model, "model_info", "labels").split() == ["otx_empty_lbl", *LABELS]
    assert info(model, "model_info", "label_ids").split() == ["None", "0", "1", "2"]
    record = load_weights(trained_run.weights).record
    assert float(info(model, "model_info", "confidence_threshold")) == pytest.approx(record.confidence_threshold)
    assert json.loads(info(model, "otxlite", "labels")) == LABELS
    assert info(model, "otxlite", "input_size") == "128 128"
    assert info(model, "otxlite", "mask_layout") == "roi"
    assert info(model, "otxlite", "precision") == "FP32"
    assert info(model, "otxlite", "template_id") == record.template_id
    assert info(model, "otxlite", "family") == "mask_rcnn"
    assert read_metadata(model, exported_ir) == record  # the record travels unchanged


def test_ir_holds_the_postprocessing(exported_ir: Path) -> None:
    types = {op.get_type_name() for op in read_ir(exported_ir).get_ordered_ops()}
    assert {"NonMaxSuppression", "ExperimentalDetectronROIFeatureExtractor"} <= types


def test_ir_runs_with_openvino_alone(exported_ir: Path, sample_dataset: Path, tmp_path: Path) -> None:
    """In a fresh interpreter where torch, mmcv and mmdet cannot be imported; uint8 input works as well."""
    image_path = tmp_path / "image.png"
    cv2.imwrite(str(image_path), cv2.resize(val_image(sample_dataset), (128, 128)))
    script = f"""
import sys
for name in ("torch", "mmcv", "mmdet", "mmengine", "mmdeploy"):
    sys.modules[name] = None
import cv2, openvino as ov
compiled = ov.Core().compile_model({str(exported_ir)!r}, "CPU")
out = compiled(cv2.imread({str(image_path)!r}).transpose(2, 0, 1)[None])
print(out["boxes"].shape[1], out["labels"].ndim, out["masks"].shape[1:])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "1", "(28,", "28)"]


def test_ir_outputs(exported_ir: Path, sample_dataset: Path) -> None:
    out = run_ir(exported_ir, val_image(sample_dataset))
    boxes, labels, masks = out["boxes"], out["labels"], out["masks"]
    assert boxes.ndim == 2 and boxes.shape[1] == 5 and len(boxes) > 0
    assert labels.shape == (len(boxes),) and masks.shape == (len(boxes), 28, 28)
    assert set(labels.tolist()) <= {0, 1, 2}
    assert np.all(boxes[:, :4] >= 0) and np.all(boxes[:, :4] <= 128)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1]), "no empty (padding) boxes"
    assert np.all((boxes[:, 4] >= 0) & (boxes[:, 4] <= 1))
    assert np.all((masks >= 0) & (masks <= 1))


def test_model_api_loads_ir_and_agrees(exported_ir: Path, sample_dataset: Path) -> None:
    import openvino as ov
    from model_api.adapters import OpenvinoAdapter
    from model_api.models import MaskRCNNModel, Model

    model = Model.create_model(OpenvinoAdapter(ov.Core(), str(exported_ir), device="CPU", plugin_config=F32))
    assert isinstance(model, MaskRCNNModel)
    threshold = 0.05  # low, so that the test sees detections even from a briefly trained model
    model.set_param("confidence_threshold", threshold)
    image = cv2.resize(val_image(sample_dataset), (128, 128))  # at the input size Model API's resize is exact
    result = model(image)

    out = run_ir(exported_ir, image)
    boxes = np.clip(np.round(out["boxes"][:, :4]), 0, 128)  # Model API rounds, clips, then drops areas <= 1
    keep = (out["boxes"][:, 4] > threshold) & (np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) > 1)
    assert len(result.bboxes) == keep.sum() > 0
    np.testing.assert_allclose(result.scores, out["boxes"][keep, 4], atol=1e-5)
    np.testing.assert_array_equal(result.bboxes, boxes[keep])
    assert result.label_names == [LABELS[i] for i in out["labels"][keep]]
    assert result.masks.shape == (len(result.bboxes), 128, 128)


def test_half_precision_ir_is_smaller_and_close(exported_ir: Path, half_precision_ir: Path, sample_dataset) -> None:
    half = half_precision_ir
    ratio = half.with_suffix(".bin").stat().st_size / exported_ir.with_suffix(".bin").stat().st_size
    assert 0.4 < ratio < 0.6
    assert info(read_ir(half), "otxlite", "precision") == "FP16"
    image = val_image(sample_dataset)
    full, reduced = run_ir(exported_ir, image), run_ir(half, image)
    best = np.argmax(full["boxes"][:, 4])
    ious = box_iou(full["boxes"][best:best + 1, :4], reduced["boxes"][:, :4])[0]
    assert ious.max() > 0.9


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


# --- SOLOv2 ------------------------------------------------------------------------------------------------------


def test_solov2_exports_full_image_masks(solov2_ir: Path, sample_dataset: Path) -> None:
    model = read_ir(solov2_ir)
    assert info(model, "otxlite", "mask_layout") == "image"
    assert info(model, "otxlite", "family") == "solov2"
    assert info(model, "model_info", "model_type") == "DETRInstSeg"
    assert info(model, "otxlite", "input_size") == "96 96"
    out = run_ir(solov2_ir, val_image(sample_dataset))
    n = len(out["boxes"])
    assert out["masks"].shape == (n, 24, 24) and out["labels"].shape == (n,)
    if n:  # SOLOv2 has no boxes: each detection covers the whole input
        np.testing.assert_array_equal(out["boxes"][:, :4], np.tile([0, 0, 96, 96], (n, 1)))


def test_model_api_runs_solov2(solov2_ir: Path, sample_dataset: Path) -> None:
    """Model API's DETRInstSeg resizes each whole-image mask to the image (SOLOv2's box is the whole input)."""
    import openvino as ov
    from model_api.adapters import OpenvinoAdapter
    from model_api.models import Model

    model = Model.create_model(OpenvinoAdapter(ov.Core(), str(solov2_ir), device="CPU", plugin_config=F32))
    assert model.__model__ == "DETRInstSeg"  # DETRInstanceSegmentation
    model.set_param("confidence_threshold", 0.0)
    image = cv2.resize(val_image(sample_dataset), (96, 96))
    result = model(image)
    out = run_ir(solov2_ir, image)
    expected = [cv2.resize(m, (96, 96)) > 0.5 for m, s in zip(out["masks"], out["boxes"][:, 4]) if s > 0]
    assert len(result.masks) == len(expected)
    for got, want in zip(result.masks.astype(bool), expected):
        union = (got | want).sum()
        assert union == 0 or (got & want).sum() / union > 0.8


def test_rpn_nms_suppresses_within_a_feature_level_only() -> None:
    """As in MMDetection's RPN: of three overlapping proposals, the two of level 0 suppress each other, the one
    of level 1 survives (mmdeploy's own RPN NMS keeps the best box alone), and comes back unshifted."""
    import torch
    from mmdeploy.codebase.mmdet.models.dense_heads import rpn_head

    from otxlite.families.mask_rcnn.export import level_aware_rpn_nms

    boxes = torch.tensor([[[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 50.0, 50.0], [11.0, 11.0, 50.0, 50.0]]])
    scores = torch.tensor([[[0.9], [0.8], [0.7]]])
    args = dict(iou_threshold=0.7, score_threshold=0.0, pre_top_k=-1, keep_top_k=10)
    original = rpn_head.multiclass_nms
    plain, _ = original(boxes, scores, 10, **args)
    with level_aware_rpn_nms([2, 1], (64, 64)):
        per_level, _ = rpn_head.multiclass_nms(boxes, scores, 10, **args)
    kept = lambda dets: dets[0][dets[0, :, 4] > 0].tolist()  # noqa: E731
    assert kept(plain) == [[10.0, 10.0, 50.0, 50.0, pytest.approx(0.9)]]
    assert kept(per_level) == [[10.0, 10.0, 50.0, 50.0, pytest.approx(0.9)], [11.0, 11.0, 50.0, 50.0, pytest.approx(0.7)]]
    assert rpn_head.multiclass_nms is original  # restored after the block


def test_ir_proposals_come_back_inside_the_image(exported_ir: Path, sample_dataset: Path) -> None:
    """The RoIs the IR's box head reads are the RPN's proposals, inside the input: the level-aware NMS shifts
    each level apart and back, and a proposal clipped to x1 == 0 on a coarser level must come back to its
    own level (OpenVINO's division once put it one level low, a whole image width to the right, and the IR
    lost objects at the image's left edge)."""
    import openvino as ov

    model = read_ir(exported_ir)
    width, height = (int(v) for v in info(model, "otxlite", "input_size").split())
    extractor = next(op for op in model.get_ordered_ops()
                     if op.get_type_name() == "ExperimentalDetectronROIFeatureExtractor")
    rois = extractor.input(0).get_source_output()
    model.add_outputs([rois])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    image = cv2.resize(val_image(sample_dataset), (width, height))
    proposals = compiled(image.transpose(2, 0, 1)[None])[compiled.outputs[-1]]
    assert len(proposals) > 100
    assert (proposals[:, 0] == 0).sum() > 5, "proposals touching the left edge: the case that went wrong"
    assert proposals.min() >= 0 and proposals[:, [0, 2]].max() <= width and proposals[:, [1, 3]].max() <= height


def test_linear_soft_masks_resized_and_cut_at_half_give_the_logits_own_masks():
    """The ``masks`` beside ``mask_logits`` (RTMDet-Ins): what Model API does to it (bilinear resize, > 0.5) draws the
    edge otxlite draws from the logits (bilinear resize, > 0); the sigmoid would not."""
    import openvino as ov
    import openvino.opset13 as ops

    from otxlite.export.openvino_ir import _add_linear_masks
    from otxlite.runtime.predictor import resize_image_masks

    logits = ops.parameter([4, 20, 20], ov.Type.f32, name="x")
    result = ops.result(logits)
    result.output(0).get_tensor().set_names({"masks"})
    model = ov.Model([result], [logits])
    _add_linear_masks(model)
    rng = np.random.default_rng(0)
    raw = (rng.normal(0, 1, (4, 20, 20)) * 12 + np.linspace(-30, 30, 20)).astype(np.float32)  # edges, big logits
    outputs = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(raw)
    masks = outputs["masks"]
    assert np.array_equal(outputs["mask_logits"], raw) and 0.0 <= masks.min() and masks.max() <= 1.0
    ours = resize_image_masks(raw, 97, 131, 0.0)
    model_api = resize_image_masks(masks, 97, 131, 0.5)
    assert (ours != model_api).mean() < 1e-4  # 0 here
    sigmoid = resize_image_masks(1 / (1 + np.exp(-raw)), 97, 131, 0.5)
    assert (ours != sigmoid).mean() > 0.01  # 0.048 here
