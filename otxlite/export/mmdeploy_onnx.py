"""otxlite ``weights.pth`` -> ONNX through mmdeploy 1.3.1, with the post-processing traced into the graph.

mmdeploy's ``torch2onnx`` builds the MMDetection model, installs its rewriters (NMS as ONNX
``NonMaxSuppression``, RoI alignment over the FPN levels as OpenVINO's
``ExperimentalDetectronROIFeatureExtractor``, the mask head, matrix NMS), the model family's own
rewrites (its ``export_module``, see ``otxlite.families``) and traces it with a static input of the
training size. The graph starts after MMDetection's data preprocessor
(it takes a normalised RGB tensor) and ends in three outputs:

- ``dets`` [1, N, 5]: x1, y1, x2, y2, score in input pixels (box-free families: the whole input);
- ``labels`` [1, N]: class ids, 0-based;
- ``masks``: [1, N, h, w] as the family declares them (``mask_layout``: per-box ``roi`` masks or whole-input
  ``image`` masks; ``mask_values``: probabilities or logits; ``box_source``: whether ``dets`` holds the
  detection's box or the whole input, for box-free families).
"""

from __future__ import annotations

import copy
import logging
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, ContextManager, Iterator

import numpy as np

from otxlite.core.console import is_verbose, prints_to_log
from otxlite.core.artifacts import ModelMetadata
from otxlite.core.errors import OtxliteError
from otxlite.export.onnx_shim import torchscript_onnx_export
from otxlite.families.family import Family

ONNX_INPUT_NAME = "input"
ONNX_OUTPUT_NAMES = ("dets", "labels", "masks")
OPSET = 11


@dataclass(frozen=True)
class ModelSpec:
    """What tracing and the OpenVINO stage must know about the exported model."""

    family: Family
    input_size: tuple[int, int]  # (width, height), the training resize
    mean: tuple[float, float, float]  # in the preprocessor's (RGB) channel order
    std: tuple[float, float, float]
    bgr_to_rgb: bool


def model_spec(config: Any, record: ModelMetadata) -> ModelSpec:
    """The family and input size from the model record, the normalisation from the ``weights.pth`` config."""
    preprocessor = config.model.data_preprocessor
    return ModelSpec(
        family=record.model_family,
        input_size=record.input_size,
        mean=tuple(float(v) for v in preprocessor.get("mean", (0.0, 0.0, 0.0))),
        std=tuple(float(v) for v in preprocessor.get("std", (1.0, 1.0, 1.0))),
        bgr_to_rgb=bool(preprocessor.get("bgr_to_rgb", False) or preprocessor.get("rgb_to_bgr", False)),
    )


def deploy_config(spec: ModelSpec) -> Any:
    """mmdeploy's instance-segmentation, OpenVINO, static-shape deploy config (mmdet ``ObjectDetection``)."""
    from mmengine.config import Config

    width, height = spec.input_size
    # The model's test_cfg supplies the thresholds of both heads; what mmdeploy takes from post_processing
    # is the RPN's score threshold (MMDetection's RPN has none: 0), its pre-NMS top-k and the per-class cap.
    return Config(dict(
        onnx_config=dict(type="onnx", export_params=True, keep_initializers_as_inputs=False, opset_version=OPSET,
                         save_file="end2end.onnx", input_names=[ONNX_INPUT_NAME],
                         output_names=list(ONNX_OUTPUT_NAMES), input_shape=[width, height], optimize=False,
                         dynamic_axes=None),
        codebase_config=dict(type="mmdet", task="ObjectDetection", model_type="end2end",
                             post_processing=dict(score_threshold=0.0, confidence_threshold=0.005, iou_threshold=0.5,
                                                  max_output_boxes_per_class=200, pre_top_k=5000, keep_top_k=100,
                                                  background_label_id=-1, export_postprocess_mask=False)),
        backend_config=dict(type="openvino", model_inputs=[dict(opt_shapes=dict(input=[1, 3, height, width]))]),
    ))


def model_config(config: Any, spec: ModelSpec) -> Any:
    """The part of the training config mmdeploy needs: the model and a test pipeline at the training size.

    The training config's ``custom_imports`` (otxlite's training hooks) are left out; otxlite's own
    model components are registered by importing :mod:`otxlite.models`.
    """
    from mmengine.config import Config

    import otxlite.models  # noqa: F401  (registers otxlite's backbones in mmdet's MODELS)

    return Config(dict(
        default_scope="mmdet",
        model=copy.deepcopy(config.model.to_dict()),
        test_pipeline=[
            dict(type="LoadImageFromFile"),
            dict(type="Resize", scale=spec.input_size, keep_ratio=False),
            dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
        ],
    ))


def export_onnx(weights: Path, config: Any, spec: ModelSpec, work_dir: Path) -> Path:
    """Trace the model in ``weights`` (an otxlite ``weights.pth``) to ``work_dir/end2end.onnx``."""
    import mmdeploy.apis

    width, height = spec.input_size
    sample = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    deploy_cfg = deploy_config(spec)
    save_file = deploy_cfg.onnx_config.save_file
    try:
        with torchscript_onnx_export(), _family_tracing(config, spec), _quiet_openmmlab():
            mmdeploy.apis.torch2onnx(sample, str(work_dir), save_file, deploy_cfg, model_config(config, spec),
                                     str(weights), device="cpu")
    except Exception as err:  # mmdeploy and the exporter raise many types; the message says what failed
        raise OtxliteError(f"Tracing {weights} to ONNX with mmdeploy failed: {type(err).__name__}: {err}") from err
    onnx_path = Path(work_dir) / save_file
    if not onnx_path.is_file():
        raise OtxliteError(f"mmdeploy did not write {onnx_path}; see the log above.")
    return onnx_path


def _family_tracing(config: Any, spec: ModelSpec) -> ContextManager[None]:
    """The family's tracing context (its export module's rewrites), or nothing for families mmdeploy handles."""
    if spec.family.export_module is None:
        return nullcontext()
    return import_module(spec.family.export_module).tracing(config, spec.input_size)


@contextmanager
def _quiet_openmmlab() -> Iterator[None]:
    """Hide the tracer's warnings (about rewrites mmdeploy made on purpose), mmengine's info/warning logs and
    what it prints on loading the checkpoint, unless ``--verbose``."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    if is_verbose():
        yield
        return
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), prints_to_log(logger):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
