"""Which detections a prediction decodes and which it keeps: one rule for ``predict`` and ``serve``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """``keep``: detections scoring under it leave the answer. ``decode``: what the predictor decodes (and pastes
    masks for): ``keep``, or None (every detection) when saliency maps are drawn, since they count every one."""

    keep: float
    decode: float | None


def detection_thresholds(model_threshold: float, requested: float | None, explain: bool) -> Thresholds:
    """The user's threshold if given, else the model's own; with ``explain``, decode every detection first."""
    keep = model_threshold if requested is None else requested
    return Thresholds(keep=keep, decode=None if explain else keep)
