"""otxlite ``weights.pth`` -> ONNX through mmdeploy 1.3.1, with the post-processing traced into the graph.

mmdeploy's ``torch2onnx`` builds the MMDetection model, installs its rewriters (NMS as ONNX
``NonMaxSuppression``, RoI alignment over the FPN levels as OpenVINO's
``ExperimentalDetectronROIFeatureExtractor``, the mask head, SOLOv2's matrix NMS, otxlite's own
RTMDet-Ins and YOLACT post-processing) and traces it
with a static input of the training size. The graph starts after MMDetection's data preprocessor
(it takes a normalised RGB tensor) and ends in three outputs:

- ``dets`` [1, N, 5]: x1, y1, x2, y2, score in input pixels (SOLOv2: the whole input, see below);
- ``labels`` [1, N]: class ids, 0-based;
- ``masks``: Mask R-CNN [1, N, 28, 28] per-box probabilities; SOLOv2 [1, N, H/4, W/4] full-image
  probabilities (mmdeploy gives SOLOv2 detections a box covering the whole input); RTMDet-Ins
  [1, N, H/8, W/8] full-image logits beside its own boxes (otxlite's rewrite: ``rtmdet_ins``); YOLACT
  [1, N, H/4, W/4] full-image probabilities, each cropped to its box (otxlite's rewrite: ``yolact``).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from otxlite.core.console import is_verbose, prints_to_log
from otxlite.core.artifacts import input_size_of
from otxlite.core.errors import OtxliteError
from otxlite.export.onnx_shim import torchscript_onnx_export
from otxlite.export.rpn_nms import level_aware_rpn_nms

ONNX_INPUT_NAME = "input"
ONNX_OUTPUT_NAMES = ("dets", "labels", "masks")
OPSET = 11
SIZE_DIVISOR = 32  # FPN strides: the padded and the resized input must be the same size
ANY_SIZE_MODELS = ("YOLACT",)  # no padding: its FPN resizes each level to the next one's size

# The model types otxlite trains, and how their masks are laid out.
MASK_LAYOUTS = {"MaskRCNN": "roi", "SOLOv2": "image", "RTMDet": "image", "YOLACT": "image"}
BOXLESS_MODELS = ("SOLOv2",)  # box-free models: mmdeploy gives every detection the whole input as its box
LOGIT_MASK_MODELS = ("RTMDet",)  # masks output as logits: MMDetection resizes them before the sigmoid


@dataclass(frozen=True)
class ModelSpec:
    """What the OpenVINO stage must know about the exported model."""

    model_type: str
    input_size: tuple[int, int]  # (width, height), the training resize
    mean: tuple[float, float, float]  # in the preprocessor's (RGB) channel order
    std: tuple[float, float, float]
    bgr_to_rgb: bool
    iou_threshold: float  # NMS IoU of the final detections (SOLOv2: none, its matrix NMS has no IoU)

    @property
    def mask_layout(self) -> str:
        """``roi``: one small mask per box; ``image``: one mask covering the whole input."""
        return MASK_LAYOUTS[self.model_type]

    @property
    def box_source(self) -> str:
        """``masks``: the model's boxes are the whole input (SOLOv2), so consumers take tight boxes around the
        masks; ``model``: the boxes output is the detection's box."""
        return "masks" if self.model_type in BOXLESS_MODELS else "model"

    @property
    def mask_values(self) -> str:
        """``logits`` where the reference model resizes mask logits (a resized probability map has its 0.5
        line elsewhere: 0.07 mask mAP lower on RTMDet-Ins), else ``probabilities``."""
        return "logits" if self.model_type in LOGIT_MASK_MODELS else "probabilities"


def model_spec(config: Any) -> ModelSpec:
    """Read the input size, normalisation and model type from a ``weights.pth`` config."""
    model = config.model
    if model.type not in MASK_LAYOUTS:
        raise OtxliteError(f"Export supports {', '.join(MASK_LAYOUTS)} models; this weights.pth holds a "
                           f"'{model.type}'.")
    width, height = input_size_of(config)
    if model.type not in ANY_SIZE_MODELS and (width % SIZE_DIVISOR or height % SIZE_DIVISOR):
        raise OtxliteError(f"The model was trained at {width}x{height}; export needs sides divisible by "
                           f"{SIZE_DIVISOR} (the FPN pads to that). Retrain with such a data.input_size.")
    preprocessor = model.data_preprocessor
    test_cfg = model.get("test_cfg", {})
    final = test_cfg.get("rcnn", test_cfg)  # two-stage models: the RoI head's settings
    return ModelSpec(
        model_type=model.type,
        input_size=(int(width), int(height)),
        mean=tuple(float(v) for v in preprocessor.get("mean", (0.0, 0.0, 0.0))),
        std=tuple(float(v) for v in preprocessor.get("std", (1.0, 1.0, 1.0))),
        bgr_to_rgb=bool(preprocessor.get("bgr_to_rgb", False) or preprocessor.get("rgb_to_bgr", False)),
        iou_threshold=float(final.get("nms", {}).get("iou_threshold", 0.5)),
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

    import otxlite.export.rtmdet_ins  # noqa: F401  (registers otxlite's RTMDet-Ins rewrite for OpenVINO)
    import otxlite.export.yolact  # noqa: F401  (and its YOLACT rewrites)

    width, height = spec.input_size
    sample = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    deploy_cfg = deploy_config(spec)
    save_file = deploy_cfg.onnx_config.save_file
    try:
        with torchscript_onnx_export(), _rpn_nms_as_in_mmdetection(config, spec), _quiet_openmmlab():
            mmdeploy.apis.torch2onnx(sample, str(work_dir), save_file, deploy_cfg, model_config(config, spec),
                                     str(weights), device="cpu")
    except Exception as err:  # mmdeploy and the exporter raise many types; the message says what failed
        raise OtxliteError(f"Tracing {weights} to ONNX with mmdeploy failed: {type(err).__name__}: {err}") from err
    onnx_path = Path(work_dir) / save_file
    if not onnx_path.is_file():
        raise OtxliteError(f"mmdeploy did not write {onnx_path}; see the log above.")
    return onnx_path


def _rpn_nms_as_in_mmdetection(config: Any, spec: ModelSpec) -> Any:
    """Level-aware RPN NMS for models with an RPN (Mask R-CNN); nothing for the others."""
    from mmdet.registry import TASK_UTILS

    model = config.model
    if "rpn_head" not in model:
        return nullcontext()
    anchors = TASK_UTILS.build(copy.deepcopy(model.rpn_head.anchor_generator))
    nms_pre = int(model.test_cfg.rpn.get("nms_pre", -1))
    width, height = spec.input_size
    sizes = []
    for per_location, (stride_x, stride_y) in zip(anchors.num_base_priors, anchors.strides):
        boxes = math.ceil(height / stride_y) * math.ceil(width / stride_x) * per_location
        sizes.append(min(boxes, nms_pre) if nms_pre > 0 else boxes)
    return level_aware_rpn_nms(sizes, spec.input_size)


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
