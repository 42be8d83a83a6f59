"""Tiling: the settings, the tile grid and the merge of tiled detections, shared by training (tiles cut from
the images), export (``rt_info``), the OpenVINO runtime and the PyTorch detector (tiled inference). numpy only.

The grid is Model API's (``model_api.tilers.Tiler._tile``) without its slivers: tiles of ``tile_size`` starting
every ``tile_size * (1 - overlap)`` pixels until one reaches the image's edge (Model API goes on and adds tiles a
few pixels wide, which only add upscaled noise), the last ones clipped there; the whole image first when
``full_image`` is set (for objects larger than a tile; small objects shrunk to a few pixels only add noise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from otxlite.families.family import STRIDE

AUTO = "auto"
AUTO_OBJECT_SHARE = 1 / 16  # auto: a typical (median) object spans this share of a tile's side ...
AUTO_LIMITS = (256, 1024)  # ... with the tile side kept within these bounds
Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in the full image


@dataclass(frozen=True)
class TilingSettings:
    """What ``tiling.*`` in a template (or ``--param``) asks for, with ``tile_size`` resolved to pixels."""

    enable: bool = False
    tile_size: int = 512
    overlap: float = 0.2
    full_image: bool = False  # also run the whole image, resized, as one more window
    max_objects: int = 200  # kept per image after the merge (Model API's max_pred_number)
    iou_threshold: float = 0.5  # mask IoU above which the weaker of two same-class detections is dropped
    sampling_ratio: float = 1.0  # training: share of the object-free tiles kept (negatives)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "TilingSettings | None":
        """The settings stored by ``to_dict`` (``None``: no tiling)."""
        if not values or not values.get("enable"):
            return None
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})


def tiling_settings(hyper_parameters: dict[str, Any], object_sizes: list[float] | None = None) -> TilingSettings | None:
    """The tiling of a run from its ``tiling`` hyper-parameters (``None`` when off); ``auto`` tile size from
    the training objects' sizes (sqrt of their areas, in pixels)."""
    raw = hyper_parameters.get("tiling", {})
    if not raw.get("enable"):
        return None
    size = raw.get("tile_size", AUTO)
    if size == AUTO:
        size = auto_tile_size(object_sizes or [])
    return TilingSettings(enable=True, tile_size=int(size), overlap=float(raw.get("overlap", 0.2)),
                          full_image=bool(raw.get("full_image", False)),
                          max_objects=int(raw.get("max_objects", 200)),
                          iou_threshold=float(raw.get("iou_threshold", 0.5)),
                          sampling_ratio=float(raw.get("sampling_ratio", 1.0)))


def auto_tile_size(object_sizes: list[float]) -> int:
    """A tile side (multiple of the stride) on which the median object spans ``AUTO_OBJECT_SHARE`` of it."""
    if not object_sizes:
        return AUTO_LIMITS[1]
    side = float(np.median(object_sizes)) / AUTO_OBJECT_SHARE
    side = min(max(side, AUTO_LIMITS[0]), AUTO_LIMITS[1])
    return int(round(side / STRIDE) * STRIDE)


def tile_starts(length: int, settings: TilingSettings) -> list[int]:
    """Where tiles start along one side: every step until a tile reaches the end."""
    step = max(int(settings.tile_size * (1 - settings.overlap)), 1)
    starts = [0]
    while starts[-1] + settings.tile_size < length:
        starts.append(starts[-1] + step)
    return starts


def tile_windows(width: int, height: int, settings: TilingSettings) -> list[Window]:
    """``(x0, y0, x1, y1)`` of the whole image (with ``full_image``), then of every tile. An image no larger
    than one tile is the whole image alone (tiling would only repeat it)."""
    whole = (0, 0, width, height)
    if width <= settings.tile_size and height <= settings.tile_size:
        return [whole]
    tiles = [(x0, y0, min(x0 + settings.tile_size, width), min(y0 + settings.tile_size, height))
             for x0 in tile_starts(width, settings) for y0 in tile_starts(height, settings)]
    return [whole, *tiles] if settings.full_image else tiles


# --- the merge -------------------------------------------------------------------------------------------------
# Each detection of the whole image and of every tile is kept as a ``Piece``: its mask cut to its own box, with
# the box's corner in the full image, so hundreds of tile detections never cost a full-size mask each. Per class,
# in falling score order, a piece whose mask overlaps a kept one by more than ``iou_threshold`` (intersection over
# union of the masks) is dropped; at most ``max_objects`` survive. Their boxes are the tight boxes of their masks,
# whatever the model's head.

@dataclass
class Piece:
    """One detection: its mask inside its box, the box's top-left corner in the full image."""

    score: float
    label: int
    mask: np.ndarray  # bool [h, w]
    x0: int
    y0: int


def pieces_of(masks: np.ndarray, scores: np.ndarray, labels: np.ndarray, window: Window) -> list[Piece]:
    """Pieces of a window's detections (masks [N, h, w] in the window's pixels); empty masks are dropped."""
    pieces = []
    for mask, score, label in zip(masks, scores, labels):
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if not len(rows):
            continue
        crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        pieces.append(Piece(float(score), int(label), crop, window[0] + int(cols[0]), window[1] + int(rows[0])))
    return pieces


def _mask_iou(a: Piece, b: Piece) -> float:
    x0, y0 = max(a.x0, b.x0), max(a.y0, b.y0)
    x1, y1 = min(a.x0 + a.mask.shape[1], b.x0 + b.mask.shape[1]), min(a.y0 + a.mask.shape[0], b.y0 + b.mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = np.logical_and(a.mask[y0 - a.y0:y1 - a.y0, x0 - a.x0:x1 - a.x0],
                           b.mask[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0]).sum()
    return float(inter) / float(a.mask.sum() + b.mask.sum() - inter)


def mask_nms(pieces: list[Piece], iou_threshold: float, max_objects: int) -> list[Piece]:
    """The pieces that survive a per-class, mask-IoU NMS, best first (at most ``max_objects``)."""
    order = sorted(pieces, key=lambda p: -p.score)
    if not order:
        return []
    x0 = np.array([p.x0 for p in order])
    y0 = np.array([p.y0 for p in order])
    x1 = x0 + np.array([p.mask.shape[1] for p in order])
    y1 = y0 + np.array([p.mask.shape[0] for p in order])
    labels = np.array([p.label for p in order])
    alive = np.ones(len(order), bool)
    kept = []
    for i, piece in enumerate(order):
        if not alive[i]:
            continue
        kept.append(piece)
        if len(kept) == max_objects:
            break
        touching = np.nonzero(alive & (labels == piece.label) & (x0 < x1[i]) & (x1 > x0[i]) & (y0 < y1[i]) &
                              (y1 > y0[i]))[0]
        for j in touching[touching > i]:
            if _mask_iou(piece, order[j]) > iou_threshold:
                alive[j] = False
    return kept


def merge(pieces: list[Piece], settings: TilingSettings, height: int, width: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N,4] xyxy, scores [N], labels [N], masks [N,H,W] bool) of the whole image from the pieces of
    every window."""
    kept = mask_nms(pieces, settings.iou_threshold, settings.max_objects)
    full = np.zeros((len(kept), height, width), bool)
    boxes = np.zeros((len(kept), 4), np.float32)
    for i, piece in enumerate(kept):
        h, w = piece.mask.shape
        full[i, piece.y0:piece.y0 + h, piece.x0:piece.x0 + w] = piece.mask
        boxes[i] = (piece.x0, piece.y0, piece.x0 + w, piece.y0 + h)
    return (boxes, np.array([p.score for p in kept], np.float32), np.array([p.label for p in kept], np.int64), full)
