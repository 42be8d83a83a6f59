"""A ``weights.pth`` model as a plain function on images (PyTorch, CPU, eval mode), for ``otxlite explain``;
a model trained on tiles runs on its tiles, merged as the IR's runtime merges them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from otxlite.core.artifacts import input_size_of, load_weights, weights_config
from otxlite.core.tiling import TilingSettings, merge, pieces_of, tile_windows

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # masks [N, H, W] bool, scores [N], labels [N]


def pytorch_detector(weights: Path) -> Callable[[np.ndarray], Detections]:
    """BGR image -> its detections in original pixels, resized to the training size as the IR does."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.utils import import_modules_from_strings

    payload = load_weights(Path(weights))
    cfg = weights_config(payload)
    register_all_modules()
    import_modules_from_strings(cfg.get("custom_imports", {}).get("imports", []))
    model = MODELS.build(cfg.model)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    width, height = input_size_of(cfg)

    def detect(image: np.ndarray) -> Detections:
        original_height, original_width = image.shape[:2]
        tensor = torch.from_numpy(cv2.resize(image, (width, height)).transpose(2, 0, 1).copy())
        sample = DetDataSample(metainfo=dict(img_id=0, img_shape=(height, width),
                                             ori_shape=(original_height, original_width),
                                             scale_factor=(width / original_width, height / original_height)))
        with torch.no_grad():
            found = model.test_step(dict(inputs=[tensor], data_samples=[sample]))[0].pred_instances
        return found.masks.numpy().astype(bool), found.scores.numpy(), found.labels.numpy()

    tiling = TilingSettings.from_dict(cfg.get("otxlite_tiling"))
    if tiling is None:
        return detect

    def detect_tiled(image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        pieces = [piece for window in tile_windows(width, height, tiling)
                  for piece in pieces_of(*detect(image[window[1]:window[3], window[0]:window[2]]), window)]
        _, scores, labels, masks = merge(pieces, tiling, height, width)
        return masks, scores, labels

    return detect_tiled
