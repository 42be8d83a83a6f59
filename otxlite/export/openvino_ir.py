"""mmdeploy's ONNX -> an OpenVINO model that takes a plain BGR image and carries its own metadata.

Input: ``image`` [1, 3, H, W], f32, NCHW, BGR pixel values 0..255 at the training size (a uint8
array works too: OpenVINO converts it). The BGR->RGB flip and MMDetection's mean/std are part of
the graph (a ``PrePostProcessor`` step), because otxlite's predictor only resizes. Model API embeds
its own preprocessing from ``rt_info`` (resize, BGR->RGB, mean, scale) in front of the model, so
``model_info`` says ``mean_values "0 0 0"``, ``scale_values "1 1 1"``, ``reverse_input_channels
False``: Model API then only resizes, exactly what the graph expects. (Leaving the graph pure and
putting mean/std into ``rt_info`` would serve Model API but give wrong results to any runtime-only
caller that does not read ``rt_info``.)

Outputs, without the batch axis (Model API 0.4.7 accepts both 2D/1D/3D and 3D/2D/4D):

- ``boxes`` [N, 5] f32: x1, y1, x2, y2, score in input pixels; for box-free families the whole input
  (``box_source`` ``masks`` in ``rt_info``: consumers box the masks instead);
- ``labels`` [N] i64: 0-based class ids (index into the label schema);
- ``masks`` [N, h, w] f32 probabilities: per box (``mask_layout`` ``roi``: paste into the box) or over the
  whole input (``image``: resize to the image), as the model's family declares (:mod:`otxlite.families`);
- ``mask_logits`` [N, h, w] f32, before ``masks``, where the family's ``mask_values`` is ``logits``: what
  otxlite resizes (as the reference model does) before thresholding at 0; ``masks`` is then a linear soft mask of
  them, ``0.5 + logits / LINEAR_MASK_SPAN`` clamped to [0, 1], for consumers that resize and threshold at 0.5.

``rt_info["model_info"]`` is what Model API reads (strings; lists space-separated), with the family's
``model_api_type``. Model API's ``InstanceSegmentationModel`` adds 1 to every label id and indexes
``labels`` with it, so ``labels`` starts with a placeholder (``otx_empty_lbl``, id ``None``) as OTX does;
names have spaces replaced by ``_`` because Model API splits the list on whitespace. ``rt_info["otxlite"]``
holds the model record key by key, with the exact label names as JSON; both are written and read by
:mod:`otxlite.core.artifacts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from otxlite.core.artifacts import MASK_LOGITS
from otxlite.export.mmdeploy_onnx import ONNX_OUTPUT_NAMES, ModelSpec

INPUT_NAME = "image"
IR_OUTPUT_NAMES = dict(zip(ONNX_OUTPUT_NAMES, ("boxes", "labels", "masks")))
LINEAR_MASK_SPAN = 100.0  # logits within +-50 map linearly onto [0, 1]; a mask edge has both sides far inside


def convert_onnx(onnx_path: Path, spec: ModelSpec) -> Any:
    """Convert the ONNX to an ``openvino.Model`` with normalisation inside and Model API's output names."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model = _embed_normalisation(model, spec)
    _finish_outputs(model)
    if spec.family.mask_values == "logits":
        _add_linear_masks(model)
    model.set_friendly_name(f"otxlite_{spec.family.name}")
    return model


def _embed_normalisation(model: Any, spec: ModelSpec) -> Any:
    from openvino import Layout, Type
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(Type.f32).set_layout(Layout("NCHW"))
    ppp.input().model().set_layout(Layout("NCHW"))
    if spec.bgr_to_rgb:
        ppp.input().preprocess().reverse_channels()
    ppp.input().preprocess().mean(list(spec.mean)).scale(list(spec.std))
    model = ppp.build()
    model.input().get_tensor().set_names({INPUT_NAME})
    return model


def _finish_outputs(model: Any) -> None:
    """``dets``/``labels``/``masks`` [1, N, ...] -> ``boxes``/``labels``/``masks`` [N, ...] without empty boxes.

    mmdeploy pads its NMS results with an all-zero box so that no tensor is ever empty; the RoI head
    then scores that box like any other (often above the confidence threshold). Rows whose box has
    no area are dropped here, so consumers see only real detections.
    """
    import openvino.opset13 as ops

    results = {IR_OUTPUT_NAMES[next(n for n in r.output(0).get_names() if n in IR_OUTPUT_NAMES)]: r
               for r in model.get_results()}
    squeezed = {name: ops.squeeze(r.input_value(0), ops.constant([0])) for name, r in results.items()}
    x1, y1, x2, y2, _ = ops.split(squeezed["boxes"], ops.constant(1), 5).outputs()
    has_area = ops.logical_and(ops.greater(ops.subtract(x2, x1), ops.constant(np.float32(0))),
                               ops.greater(ops.subtract(y2, y1), ops.constant(np.float32(0))))  # [N, 1]
    keep = ops.squeeze(ops.non_zero(ops.squeeze(has_area, ops.constant([1])), "i64"), ops.constant([0]))  # [K]
    for name, result in results.items():
        result.input_value(0).get_tensor().set_names(set())
        result.input(0).replace_source_output(ops.gather(squeezed[name], keep, ops.constant(0)).output(0))
        result.output(0).get_tensor().set_names({name})  # a Result's tensor names are its own
    model.validate_nodes_and_infer_types()


def _add_linear_masks(model: Any) -> None:
    """Masks given as logits become ``mask_logits`` (what otxlite's predictor resizes, as the reference model
    does), and a last output ``masks`` holds ``0.5 + logits / LINEAR_MASK_SPAN`` in [0, 1]: what Model API resizes
    and thresholds at 0.5 (it takes the last 3-D output as the masks). Bilinear resizing commutes with that affine
    map, so its masks are otxlite's; the sigmoid would not (a resized probability map puts the 0.5 line outside
    the logits' 0 line: masks 5-15 % larger on the coins model)."""
    import openvino.opset13 as ops

    result = next(r for r in model.get_results() if "masks" in r.output(0).get_names())
    logits = result.input_value(0)
    result.output(0).get_tensor().set_names({MASK_LOGITS})
    scaled = ops.multiply(logits, ops.constant(np.float32(1.0 / LINEAR_MASK_SPAN)))
    masks = ops.result(ops.clamp(ops.add(scaled, ops.constant(np.float32(0.5))), 0.0, 1.0))
    masks.output(0).get_tensor().set_names({"masks"})
    model.add_results([masks])
    model.validate_nodes_and_infer_types()
