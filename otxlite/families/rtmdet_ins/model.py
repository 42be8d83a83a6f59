"""RTMDet-Ins's head with masks brought back to images resized without keeping their aspect ratio.

MMDetection 3.3's ``RTMDetInsHead._bbox_mask_post_process`` resizes the masks back to the original
image with the width and height scale factors swapped: harmless with its own keep-ratio resize (both
factors equal), wrong with otxlite's plain resize of a non-square image (the masks come out with the
wrong shape). This head does the same post-processing with each factor on its own axis.

Registered in mmdet's ``MODELS`` as ``'RTMDetInsSepBNHeadPlainResize'``; mmdeploy's export rewrite of
``RTMDetInsHead.predict_by_feat`` applies to it unchanged (it does not use this method).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from mmcv.ops import batched_nms
from mmdet.models.dense_heads import RTMDetInsSepBNHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_wh, scale_boxes


@MODELS.register_module()
class RTMDetInsSepBNHeadPlainResize(RTMDetInsSepBNHead):
    """``RTMDetInsSepBNHead`` whose masks are rescaled per axis (see the module docstring)."""

    def _bbox_mask_post_process(self, results: Any, mask_feat: torch.Tensor, cfg: Any, rescale: bool = False,
                                with_nms: bool = True, img_meta: dict | None = None) -> Any:
        assert with_nms, "RTMDet-Ins needs NMS"
        if rescale:
            results.bboxes = scale_boxes(results.bboxes, [1 / s for s in img_meta["scale_factor"]])
        if hasattr(results, "score_factors"):
            results.scores = results.scores * results.pop("score_factors")
        if cfg.get("min_bbox_size", -1) >= 0:
            width, height = get_box_wh(results.bboxes)
            results = results[(width > cfg.min_bbox_size) & (height > cfg.min_bbox_size)]
        out_h, out_w = img_meta["ori_shape"][:2] if rescale else img_meta["img_shape"][:2]
        if results.bboxes.numel() == 0:
            results.masks = torch.zeros((0, out_h, out_w), dtype=torch.bool, device=results.bboxes.device)
            return results
        dets, keep = batched_nms(results.bboxes, results.scores, results.labels, cfg.nms)
        results = results[keep]
        results.scores = dets[:, -1]
        results = results[:cfg.max_per_img]
        logits = self._mask_predict_by_feat_single(mask_feat, results.kernels, results.priors)
        logits = F.interpolate(logits[None], scale_factor=self.prior_generator.strides[0][0], mode="bilinear")
        if rescale:  # the network input (padded) back to original pixels, then the padding cropped away
            w_scale, h_scale = img_meta["scale_factor"]
            size = [math.ceil(logits.shape[-2] / h_scale), math.ceil(logits.shape[-1] / w_scale)]
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[..., :out_h, :out_w]
        results.masks = logits[0].sigmoid() > cfg.mask_thr_binary
        return results
