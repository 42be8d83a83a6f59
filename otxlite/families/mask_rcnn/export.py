"""Mask R-CNN's export: mmdeploy's RPN NMS made level-aware, as MMDetection's is.

MMDetection's ``RPNHead`` runs NMS per feature level (``batched_nms`` with the level as the class), so a
large proposal from a coarse level never suppresses a small one from a fine level. mmdeploy 1.3.1's
rewrite of ``RPNHead.predict_by_feat`` runs one NMS over all levels together; the exported model then keeps
other proposals than the PyTorch model and its low-score detections differ (a few mAP points on small data).

:func:`level_aware_rpn_nms` wraps the ``multiclass_nms`` that rewrite calls, only while the ``with`` block
runs: each level's boxes are shifted by ``level * span`` (``span`` larger than the image) so that boxes of
different levels never overlap, which is mmcv's ``batched_nms`` trick, and the kept boxes are shifted back.
The rewrite takes the top ``min(nms_pre, boxes of the level)`` boxes of every level, in level order.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any, ContextManager, Iterator


def tracing(config: Any, input_size: tuple[int, int]) -> ContextManager[None]:
    """While mmdeploy traces the model: level-aware RPN NMS over as many boxes per level as the model's RPN
    keeps at ``input_size`` (width, height)."""
    from mmdet.registry import TASK_UTILS

    model = config.model
    anchors = TASK_UTILS.build(copy.deepcopy(model.rpn_head.anchor_generator))
    nms_pre = int(model.test_cfg.rpn.get("nms_pre", -1))
    width, height = input_size
    sizes = []
    for per_location, (stride_x, stride_y) in zip(anchors.num_base_priors, anchors.strides):
        boxes = math.ceil(height / stride_y) * math.ceil(width / stride_x) * per_location
        sizes.append(min(boxes, nms_pre) if nms_pre > 0 else boxes)
    return level_aware_rpn_nms(sizes, input_size)


@contextmanager
def level_aware_rpn_nms(level_sizes: list[int], image_size: tuple[int, int]) -> Iterator[None]:
    """Inside the block, mmdeploy's RPN NMS suppresses boxes of the same feature level only.

    ``level_sizes``: how many boxes each level gives the NMS; ``image_size``: the input's (width, height).
    """
    import torch
    from mmdeploy.codebase.mmdet.models.dense_heads import rpn_head

    original = rpn_head.multiclass_nms
    span = float(max(image_size) + 1)  # the rewrite clips proposals to the image

    def per_level_nms(boxes: torch.Tensor, scores: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if boxes.shape[1] != sum(level_sizes):
            raise RuntimeError(f"RPN NMS got {boxes.shape[1]} boxes, expected {sum(level_sizes)} ({level_sizes})")
        levels = torch.arange(len(level_sizes), dtype=boxes.dtype).repeat_interleave(torch.tensor(level_sizes))
        shift = levels[None, :, None] * span
        dets, labels = original(boxes + shift, scores, *args, **kwargs)
        # x1 lies in [level * span, level * span + width]: half a pixel keeps the division away from an
        # integer, where OpenVINO's reciprocal multiply puts a box at x1 == 0 one level too low.
        back = torch.floor((dets[..., :1] + 0.5) / span) * span
        return torch.cat([dets[..., :4] - back, dets[..., 4:]], dim=-1), labels

    rpn_head.multiclass_nms = per_level_nms
    try:
        yield
    finally:
        rpn_head.multiclass_nms = original
