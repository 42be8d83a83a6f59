"""The model record and the two artifacts that carry it between verbs, each with one writer and one reader.

The model record (:class:`ModelMetadata`) is created once, at the end of training, and travels unchanged:

``weights.pth`` (written by training, read by eval, export and ``--load-weights``): tensors and plain
Python values only, so ``torch.load(weights_only=True)`` reads it and no code runs from the file::

    otxlite_format, otxlite_version, record (the model record as a dict), metrics, state_dict,
    config (the resolved mmengine config as a dict: how to rebuild the network)

The IR's ``rt_info`` (written by export and optimize, read by every OpenVINO consumer)::

    model_info/...   what OpenVINO Model API reads (strings, lists space-separated)
    otxlite/...      the record, key by key (exact label names as JSON), optimization/... after optimize

Both carry the format version ``RECORD_FORMAT``; a file of another format is refused in one paragraph.

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
from otxlite.families import FAMILIES, family_named
from otxlite.families.family import Family

RECORD_FORMAT = 3  # weights.pth and rt_info; 3: the model record (family, optimization settings) in both
MASK_THRESHOLD = 0.5  # MMDetection's mask_thr_binary / mask_thr of both model families
MASK_LOGITS = "mask_logits"  # the IR output beside ``masks`` where a family's masks are logits (export/openvino_ir.py)
EMPTY_LABEL = "otx_empty_lbl"  # label 0 of Model API's instance segmentation (it shifts ids by 1)


def save_weights(path: Path, state_dict: dict[str, Any], config: dict[str, Any], record: "ModelMetadata",
                 metrics: dict[str, float] | None = None) -> Path:
    """Write a self-contained ``weights.pth`` atomically."""
    import torch

    payload = {
        "otxlite_format": RECORD_FORMAT,
        "otxlite_version": __version__,
        "record": record.to_dict(),
        "state_dict": {key: value.detach().cpu() for key, value in state_dict.items()},
        "config": config,
        "metrics": {key: float(value) for key, value in (metrics or {}).items()},
    }
    buffer = io.BytesIO()  # serialized first: a full disk then fails as the plain write it is, size known
    torch.save(payload, buffer)
    with atomic_path(path, buffer.getbuffer().nbytes) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def _older_format(path: Path, written_by: Any, found: Any) -> OtxliteError:
    return OtxliteError(
        f"--load-weights {path}: written by otxlite {written_by or '(unknown)'} in format {found}; this otxlite "
        f"({__version__}) reads format {RECORD_FORMAT}. Use the otxlite version that wrote it, or retrain (a "
        "weights.pth) / export again from the weights.pth (an IR) with this version.")


@dataclass(frozen=True)
class Weights:
    """A loaded ``weights.pth``."""

    record: "ModelMetadata"
    state_dict: dict[str, Any]
    config: dict[str, Any]  # the resolved mmengine config as a dict: how to rebuild the network
    metrics: dict[str, float]  # the validation that chose these weights (empty without one)
    otxlite_version: str

    def mmengine_config(self) -> Any:
        """The config as an mmengine ``Config``."""
        from mmengine.config import Config

        return Config(self.config)


def load_weights(path: Path) -> Weights:
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
    if payload["otxlite_format"] != RECORD_FORMAT:
        raise _older_format(path, payload.get("otxlite_version"), payload["otxlite_format"])
    return Weights(record=ModelMetadata.from_dict(payload["record"]), state_dict=payload["state_dict"],
                   config=payload["config"], metrics=payload["metrics"], otxlite_version=payload["otxlite_version"])


@dataclass(frozen=True)
class ModelMetadata:
    """The model record: everything a consumer of an otxlite model needs to know beyond its weights or graph."""

    family: str  # a name in otxlite.families.FAMILIES: how the masks come out
    labels: list[str]
    input_size: tuple[int, int]  # (width, height)
    confidence_threshold: float
    iou_threshold: float = 0.5
    mask_threshold: float = MASK_THRESHOLD
    template_id: str = ""
    tiling: TilingSettings | None = None  # trained on tiles: infer on the whole image plus tiles
    optimization_settings: dict[str, Any] = field(default_factory=dict)  # subset_size, preset, max_accuracy_drop
    precision: str = "FP32"
    optimization: dict[str, str] = field(default_factory=dict)  # what `otxlite optimize` did
    otxlite_version: str = __version__

    @property
    def model_family(self) -> Family:
        return family_named(self.family)

    @property
    def mask_layout(self) -> str:
        return self.model_family.mask_layout

    @property
    def box_source(self) -> str:
        return self.model_family.box_source

    @property
    def mask_values(self) -> str:
        return self.model_family.mask_values

    def quantized(self, optimization: dict[str, str]) -> "ModelMetadata":
        """The record of this model's INT8 version."""
        return replace(self, precision="INT8", optimization=dict(optimization), otxlite_version=__version__)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (what ``weights.pth`` stores)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return values | {"labels": list(self.labels), "input_size": list(self.input_size),
                         "tiling": None if self.tiling is None else self.tiling.to_dict(),
                         "optimization_settings": dict(self.optimization_settings),
                         "optimization": dict(self.optimization)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelMetadata":
        """The record ``to_dict`` wrote (or a mapping type that looks like it, e.g. an mmengine ConfigDict)."""
        return cls(**(dict(values) | {"labels": list(values["labels"]), "input_size": tuple(values["input_size"]),
                                      "tiling": TilingSettings.from_dict(values.get("tiling")),
                                      "optimization_settings": dict(values.get("optimization_settings", {})),
                                      "optimization": dict(values.get("optimization", {}))}))


def write_metadata(model: Any, metadata: ModelMetadata) -> None:
    """Write the model record into an ``openvino.Model``'s ``rt_info`` (Model API's and otxlite's sections)."""
    model_info = {
        "model_type": metadata.model_family.model_api_type,
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
        "format": str(RECORD_FORMAT),
        "version": metadata.otxlite_version,
        "template_id": metadata.template_id,
        "family": metadata.family,
        "labels": json.dumps(metadata.labels),
        "input_size": f"{metadata.input_size[0]} {metadata.input_size[1]}",
        # the family's mask contract, spelled out for consumers that do not know otxlite's families
        "mask_layout": metadata.mask_layout,
        "box_source": metadata.box_source,
        "mask_values": metadata.mask_values,
        "mask_threshold": str(metadata.mask_threshold),
        "precision": metadata.precision,
        "optimization_settings": json.dumps(metadata.optimization_settings),
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


def model_record(path: Path) -> ModelMetadata:
    """The model record of a ``weights.pth`` or an IR (read, not compiled): what a verb needs to know before any
    heavy work (labels to import data with, the optimization settings)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        import openvino as ov

        return read_metadata(ov.Core().read_model(str(path)), path)
    return load_weights(path).record


def is_optimized(model: Any) -> bool:
    """True if ``otxlite optimize`` wrote this IR."""
    return model.has_rt_info(["otxlite", "optimization"])


def read_metadata(model: Any, xml: Path) -> ModelMetadata:
    """Read the model record of an ``openvino.Model`` loaded from ``xml``; explain what is missing."""
    if _rt(model, "otxlite", "labels") is None:
        raise OtxliteError(
            f"--load-weights {xml}: this IR lacks the metadata otxlite needs (otxlite.labels in rt_info). "
            "Export it with `otxlite export`, which writes otxlite's and Model API's metadata."
        )
    found = _rt(model, "otxlite", "format")
    if found != str(RECORD_FORMAT):
        raise _older_format(xml, _rt(model, "otxlite", "version"), found or "2 or older")
    family = _rt(model, "otxlite", "family")
    if family not in FAMILIES:
        raise OtxliteError(f"--load-weights {xml}: the IR's model family '{family}' is unknown to this otxlite "
                           f"({__version__}; it knows {', '.join(FAMILIES)}). Use the otxlite version that exported it.")
    width, height = (int(v) for v in _rt(model, "otxlite", "input_size").split())
    optimization = {}
    if is_optimized(model):
        optimization = {key: _rt(model, "otxlite", "optimization", key) or ""
                        for key in model.get_rt_info(["otxlite", "optimization"]).astype(dict)}
    return ModelMetadata(
        family=family,
        labels=json.loads(_rt(model, "otxlite", "labels")),
        input_size=(width, height),
        confidence_threshold=float(_rt(model, "model_info", "confidence_threshold")),
        iou_threshold=float(_rt(model, "model_info", "iou_threshold")),
        mask_threshold=float(_rt(model, "otxlite", "mask_threshold")),
        template_id=_rt(model, "otxlite", "template_id") or "",
        tiling=TilingSettings.from_dict(json.loads(_rt(model, "otxlite", "tiling") or "{}")),
        optimization_settings=json.loads(_rt(model, "otxlite", "optimization_settings") or "{}"),
        precision=_rt(model, "otxlite", "precision") or "FP32",
        optimization=optimization,
        otxlite_version=_rt(model, "otxlite", "version") or "",
    )
