"""A PyTorch model as a plain function on images (eval mode), for ``otxlite explain``, ``benchmark`` and the
validation of a model trained on tiles; such a model runs on its tiles, merged as the IR's runtime merges
them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from otxlite.core.artifacts import load_weights
from otxlite.core.tiling import TilingSettings, merge, pieces_of, tile_windows

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # masks [N, H, W] bool, scores [N], labels [N]
# boxes [N, 4] xyxy, scores [N], labels [N], masks [N, H, W] bool (the order of core.tiling.merge)
BoxedDetections = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def model_detector(model: Any, input_size: tuple[int, int]) -> Callable[[np.ndarray], BoxedDetections]:
    """A live MMDetection model (eval mode) as a function: BGR image -> its detections in original pixels,
    resized to ``input_size`` (width, height) as the IR's runtime resizes."""
    import torch
    from mmdet.structures import DetDataSample

    width, height = input_size

    def detect(image: np.ndarray) -> BoxedDetections:
        original_height, original_width = image.shape[:2]
        tensor = torch.from_numpy(cv2.resize(image, (width, height)).transpose(2, 0, 1).copy())
        sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(height, width),
                                             ori_shape=(original_height, original_width),
                                             scale_factor=(width / original_width, height / original_height)))
        with torch.no_grad():
            found = model.test_step(dict(inputs=[tensor], data_samples=[sample]))[0].pred_instances
        return (found.bboxes.cpu().numpy(), found.scores.cpu().numpy(), found.labels.cpu().numpy(),
                found.masks.cpu().numpy().astype(bool))

    return detect


def tiled_detector(detect: Callable[[np.ndarray], BoxedDetections],
                   tiling: TilingSettings) -> Callable[[np.ndarray], BoxedDetections]:
    """``detect`` run on every tile of an image (and the whole image, if the settings say so), merged as the
    IR's runtime merges them."""

    def detect_tiled(image: np.ndarray) -> BoxedDetections:
        height, width = image.shape[:2]
        pieces = []
        for x0, y0, x1, y1 in tile_windows(width, height, tiling):
            _, scores, labels, masks = detect(image[y0:y1, x0:x1])
            pieces += pieces_of(masks, scores, labels, (x0, y0, x1, y1))
        return merge(pieces, tiling, height, width)

    return detect_tiled


def pytorch_detector(weights: Path) -> Callable[[np.ndarray], Detections]:
    """BGR image -> its detections in original pixels, resized to the training size as the IR does (tiled
    when the model was trained on tiles)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.utils import import_modules_from_strings

    loaded = load_weights(Path(weights))
    record = loaded.record
    cfg = loaded.mmengine_config()
    register_all_modules()
    import_modules_from_strings(cfg.get("custom_imports", {}).get("imports", []))
    model = MODELS.build(cfg.model)
    model.load_state_dict(loaded.state_dict)
    model.eval()
    detect = model_detector(model, record.input_size)
    if record.tiling is not None:
        detect = tiled_detector(detect, record.tiling)

    def masks_scores_labels(image: np.ndarray) -> Detections:
        _, scores, labels, masks = detect(image)
        return masks, scores, labels

    return masks_scores_labels
