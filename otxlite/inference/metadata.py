"""What otxlite needs to know about an IR, read from its ``rt_info`` (written by ``otxlite export``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otxlite.errors import OtxliteError


@dataclass(frozen=True)
class ModelMetadata:
    """Labels, input size, threshold and output layout of an exported model."""

    labels: list[str]
    input_size: tuple[int, int]  # (width, height)
    confidence_threshold: float
    mask_layout: str  # "roi": per-box masks (Mask R-CNN); "image": whole-image masks (SOLOv2)
    precision: str
    otxlite_version: str
    template_id: str


def _rt(model: Any, *path: str) -> Any:
    if not model.has_rt_info(list(path)):
        return None
    value = model.get_rt_info(list(path))
    return value.astype(str) if hasattr(value, "astype") else str(value)


def read_metadata(model: Any, xml: Path) -> ModelMetadata:
    """Read otxlite's and Model API's metadata from an ``openvino.Model``; explain what is missing."""
    missing = [key for key in ("labels", "input_size", "mask_layout") if _rt(model, "otxlite", key) is None]
    if _rt(model, "model_info", "model_type") is None:
        missing.append("model_info.model_type")
    if missing:
        raise OtxliteError(
            f"--load-weights {xml}: this IR lacks the metadata otxlite needs ({', '.join(missing)} in rt_info). "
            "Export it with `otxlite export`, which writes otxlite's and Model API's metadata."
        )
    labels = json.loads(_rt(model, "otxlite", "labels"))
    width, height = (int(v) for v in _rt(model, "otxlite", "input_size").split())
    return ModelMetadata(
        labels=labels,
        input_size=(width, height),
        confidence_threshold=float(_rt(model, "model_info", "confidence_threshold") or 0.35),
        mask_layout=_rt(model, "otxlite", "mask_layout"),
        precision=_rt(model, "otxlite", "precision") or "FP32",
        otxlite_version=_rt(model, "otxlite", "version") or "",
        template_id=_rt(model, "otxlite", "template_id") or "",
    )
