"""MMDetection's CocoDataset without pycocotools' console chatter."""

from __future__ import annotations

import contextlib
import io

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class QuietCocoDataset(CocoDataset):
    """CocoDataset whose annotation loading prints nothing (pycocotools prints progress to stdout)."""

    def load_data_list(self) -> list[dict]:
        with contextlib.redirect_stdout(io.StringIO()):
            return super().load_data_list()
