"""MMDetection's CocoDataset without pycocotools' console chatter, and the image loader of every pipeline."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from mmcv.transforms import BaseTransform
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS, TRANSFORMS

from otxlite.core.errors import OtxliteError
from otxlite.core.images import read_image


@DATASETS.register_module()
class QuietCocoDataset(CocoDataset):
    """CocoDataset whose annotation loading prints nothing (pycocotools prints progress to stdout)."""

    def load_data_list(self) -> list[dict]:
        with contextlib.redirect_stdout(io.StringIO()):
            return super().load_data_list()


@TRANSFORMS.register_module()
class LoadViewedImage(BaseTransform):
    """mmcv's ``LoadImageFromFile`` through ``otxlite.core.images.read_image``: the image as a viewer shows it
    (EXIF orientation applied), 8-bit BGR, exactly as evaluation, ``predict`` and ``serve`` read it."""

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        image = read_image(results["img_path"])
        if image is None:
            raise OtxliteError(f"The image {results['img_path']} cannot be decoded (truncated or not an image). "
                               "Replace or remove it, or pass --skip-bad-images when the data is imported.")
        results["img"] = image
        results["img_shape"] = results["ori_shape"] = image.shape[:2]
        return results
