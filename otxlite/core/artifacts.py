"""The two artifacts otxlite hands over between verbs, each with one writer and one reader.

``weights.pth`` (written by training, read by eval, export and ``--load-weights``): tensors and plain
Python values only, so ``torch.load(weights_only=True)`` reads it and no code runs from the file::

    otxlite_format, otxlite_version, template_id, labels, confidence_threshold, metrics, state_dict,
    config (the resolved mmengine config as a dict, with input_size [width, height]: see input_size_of)

The IR's ``rt_info`` (written by export and optimize, read by every OpenVINO consumer)::

    model_info/...   what OpenVINO Model API's MaskRCNNModel reads (strings, lists space-separated)
    otxlite/...      otxlite's own keys (exact label names as JSON), optimization/... after optimize

Nothing here imports torch or mmengine at module level: the OpenVINO side reads IR metadata without them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otxlite import __version__
from otxlite.core.errors import OtxliteError
from otxlite.core.fileio import atomic_path
from otxlite.core.tiling import TilingSettings

WEIGHTS_FORMAT = 2
MASK_THRESHOLD = 0.5  # MMDetection's mask_thr_binary / mask_thr of both model families
EMPTY_LABEL = "otx_empty_lbl"  # label 0 of Model API's instance segmentation (it shifts ids by 1)
DEFAULT_CONFIDENCE_THRESHOLD = 0.35  # for IRs whose model_info lacks one


def input_size_of(config: Any) -> tuple[int, int]:
    """The (width, height) a model was trained at, from its mmengine config (or config dict).

    Configs built by otxlite carry ``input_size``; those in older ``weights.pth`` files only have it as
    the training ``Resize`` step, which is read instead."""
    try:
        size = config.get("input_size") or next(
            step["scale"] for step in config["train_dataloader"]["dataset"]["pipeline"] if step["type"] == "Resize")
        width, height = size
    except (AttributeError, KeyError, StopIteration, TypeError, ValueError) as err:
        raise OtxliteError("The weights.pth config has neither input_size nor a training Resize step, so the "
                           "input size is unknown. Use a weights.pth written by otxlite train.") from err
    return int(width), int(height)


def save_weights(path: Path, state_dict: dict[str, Any], config: dict[str, Any], labels: list[str],
                 confidence_threshold: float, template_id: str, metrics: dict[str, float] | None = None) -> Path:
    """Write a self-contained ``weights.pth`` atomically."""
    import torch

    payload = {
        "otxlite_format": WEIGHTS_FORMAT,
        "otxlite_version": __version__,
        "state_dict": {key: value.detach().cpu() for key, value in state_dict.items()},
        "config": config,
        "labels": list(labels),
        "confidence_threshold": float(confidence_threshold),
        "template_id": template_id,
        "metrics": {key: float(value) for key, value in (metrics or {}).items()},
    }
    buffer = io.BytesIO()  # serialized first: a full disk then fails as the plain write it is, size known
    torch.save(payload, buffer)
    with atomic_path(path, buffer.getbuffer().nbytes) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def load_weights(path: Path) -> dict[str, Any]:
    """Read an otxlite ``weights.pth`` (weights only: no code runs from the file)."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise OtxliteError(
            f"--load-weights {path}: this is not a readable PyTorch checkpoint (corrupt, truncated or another "
            f"format; {type(err).__name__}: {str(err).splitlines()[0][:160]}). Use the models/weights.pth of an "
            "otxlite training run."
        ) from err
    if not isinstance(payload, dict) or "otxlite_format" not in payload:
        raise OtxliteError(f"--load-weights {path}: this is not an otxlite weights.pth (no otxlite metadata). "
                           "Use the models/weights.pth of an otxlite training run.")
    if payload["otxlite_format"] != WEIGHTS_FORMAT:
        raise OtxliteError(
            f"--load-weights {path}: written by otxlite {payload.get('otxlite_version')} in format "
            f"{payload['otxlite_format']}; this otxlite ({__version__}) reads format {WEIGHTS_FORMAT}. "
            "Use the otxlite version that trained it, or retrain."
        )
    return payload


def is_tiled(path: Path) -> bool:
    """True if the ``weights.pth`` at ``path`` was trained on tiles (and so infers on tiles)."""
    return TilingSettings.from_dict(load_weights(path)["config"].get("otxlite_tiling")) is not None


MOVED_MODULES = {"otxlite.engine.registry": "otxlite.training.registry"}  # in weights.pth files of older otxlite


def weights_config(payload: dict[str, Any]) -> Any:
    """The mmengine Config stored in a loaded ``weights.pth`` (its ``custom_imports`` under today's names)."""
    from mmengine.config import Config

    config = Config(payload["config"])
    if "custom_imports" in config:
        imports = config.custom_imports.get("imports", [])
        config.custom_imports["imports"] = [MOVED_MODULES.get(name, name) for name in imports]
    return config


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a consumer of an otxlite IR needs to know beyond its graph."""

    labels: list[str]
    input_size: tuple[int, int]  # (width, height)
    confidence_threshold: float
    mask_layout: str  # "roi": per-box masks (Mask R-CNN); "image": whole-image masks (SOLOv2, RTMDet-Ins)
    model_type: str = ""
    box_source: str = "model"  # "model": the boxes output; "masks": tight boxes around the masks (SOLOv2)
    mask_values: str = "probabilities"  # or "logits" (RTMDet-Ins: resized as logits, as MMDetection does)
    iou_threshold: float = 0.5
    mask_threshold: float = MASK_THRESHOLD
    precision: str = "FP32"
    template_id: str = ""
    otxlite_version: str = __version__
    optimization: dict[str, str] = field(default_factory=dict)  # after `otxlite optimize`
    tiling: TilingSettings | None = None  # trained on tiles: infer on the whole image plus tiles

    def quantized(self, optimization: dict[str, str]) -> "ModelMetadata":
        """The metadata of this model's INT8 version."""
        return replace(self, precision="INT8", optimization=dict(optimization), otxlite_version=__version__)


def write_metadata(model: Any, metadata: ModelMetadata) -> None:
    """Write ``metadata`` into an ``openvino.Model``'s ``rt_info`` (Model API's and otxlite's sections)."""
    model_info = {
        "model_type": "MaskRCNN",  # SOLOv2 too: its box is the whole input, where Model API pastes its mask
        "task_type": "instance_segmentation",
        "labels": " ".join([EMPTY_LABEL, *(name.replace(" ", "_") for name in metadata.labels)]),
        "label_ids": " ".join(["None", *(str(i) for i in range(len(metadata.labels)))]),
        "confidence_threshold": str(metadata.confidence_threshold),
        "iou_threshold": str(metadata.iou_threshold),
        "mean_values": "0 0 0",  # normalisation is inside the graph
        "scale_values": "1 1 1",
        "reverse_input_channels": "False",
        "resize_type": "standard",  # otxlite trains with keep_ratio=False
        "pad_value": "0",
    }
    otxlite = {
        "version": metadata.otxlite_version,
        "template_id": metadata.template_id,
        "model_type": metadata.model_type,
        "labels": json.dumps(metadata.labels),
        "input_size": f"{metadata.input_size[0]} {metadata.input_size[1]}",
        "mask_layout": metadata.mask_layout,
        "box_source": metadata.box_source,
        "mask_values": metadata.mask_values,
        "mask_threshold": str(metadata.mask_threshold),
        "precision": metadata.precision,
    }
    for key, value in model_info.items():
        model.set_rt_info(value, ["model_info", key])
    for key, value in otxlite.items():
        model.set_rt_info(value, ["otxlite", key])
    for key, value in metadata.optimization.items():
        model.set_rt_info(value, ["otxlite", "optimization", key])
    if metadata.tiling is not None:
        model.set_rt_info(json.dumps(metadata.tiling.to_dict()), ["otxlite", "tiling"])
        tiler = {"tile_size": str(metadata.tiling.tile_size), "tiles_overlap": str(metadata.tiling.overlap),
                 "max_pred_number": str(metadata.tiling.max_objects),
                 "tile_with_full_img": str(metadata.tiling.full_image)}
        for key, value in tiler.items():  # what Model API's InstanceSegmentationTiler reads
            model.set_rt_info(value, ["model_info", key])


def _rt(model: Any, *path: str) -> str | None:
    if not model.has_rt_info(list(path)):
        return None
    value = model.get_rt_info(list(path))
    return value.astype(str) if hasattr(value, "astype") else str(value)


def model_labels_and_template(path: Path) -> tuple[list[str], str]:
    """The labels and template id of a ``weights.pth`` or an IR (read, not compiled): what a verb needs to import
    its data before any heavy work."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        import openvino as ov

        metadata = read_metadata(ov.Core().read_model(str(path)), path)
        return metadata.labels, metadata.template_id
    payload = load_weights(path)
    return list(payload["labels"]), payload.get("template_id", "")


def is_optimized(model: Any) -> bool:
    """True if ``otxlite optimize`` wrote this IR."""
    return model.has_rt_info(["otxlite", "optimization"])


def read_metadata(model: Any, xml: Path) -> ModelMetadata:
    """Read the metadata of an ``openvino.Model`` loaded from ``xml``; explain what is missing."""
    missing = [key for key in ("labels", "input_size", "mask_layout") if _rt(model, "otxlite", key) is None]
    if _rt(model, "model_info", "model_type") is None:
        missing.append("model_info.model_type")
    if missing:
        raise OtxliteError(
            f"--load-weights {xml}: this IR lacks the metadata otxlite needs ({', '.join(missing)} in rt_info). "
            "Export it with `otxlite export`, which writes otxlite's and Model API's metadata."
        )
    width, height = (int(v) for v in _rt(model, "otxlite", "input_size").split())
    optimization = {}
    if is_optimized(model):
        optimization = {key: _rt(model, "otxlite", "optimization", key) or ""
                        for key in model.get_rt_info(["otxlite", "optimization"]).astype(dict)}
    return ModelMetadata(
        labels=json.loads(_rt(model, "otxlite", "labels")),
        input_size=(width, height),
        confidence_threshold=float(_rt(model, "model_info", "confidence_threshold") or DEFAULT_CONFIDENCE_THRESHOLD),
        mask_layout=_rt(model, "otxlite", "mask_layout"),
        model_type=_rt(model, "otxlite", "model_type") or "",
        # IRs written before box_source: whole-image masks came from SOLOv2 alone, whose boxes are the input
        box_source=_rt(model, "otxlite", "box_source") or ("masks" if _rt(model, "otxlite", "mask_layout") == "image"
                                                           else "model"),
        iou_threshold=float(_rt(model, "model_info", "iou_threshold") or 0.5),
        mask_threshold=float(_rt(model, "otxlite", "mask_threshold") or MASK_THRESHOLD),
        mask_values=_rt(model, "otxlite", "mask_values") or "probabilities",
        precision=_rt(model, "otxlite", "precision") or "FP32",
        template_id=_rt(model, "otxlite", "template_id") or "",
        otxlite_version=_rt(model, "otxlite", "version") or "",
        optimization=optimization,
        tiling=TilingSettings.from_dict(json.loads(_rt(model, "otxlite", "tiling") or "{}")),
    )
