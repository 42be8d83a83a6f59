"""YOLACT's post-processing as otxlite exports it to OpenVINO (mmdeploy rewrites, backend ``openvino``).

mmdeploy 1.3.1 has no YOLACT rewrite. These two follow MMDetection's test path step for step, in ops that
trace to a static graph:

- ``YOLACTHead.predict_by_feat``: softmax scores, the top ``nms_pre`` priors of each level, box decoding,
  then MMDetection's *fast NMS* (per class: the ``top_k`` best boxes, dropped where a better box of the
  class overlaps them above ``iou_thr``, or where the score is not above ``score_thr``) and the best
  ``max_per_img`` across classes. Returns ``(dets [1, N, 5], labels [1, N], coefficients [1, N, P])``;
  detections that did not survive have score 0 (otxlite's decoder drops them).
- ``YOLACTProtonet.predict``: prototypes x coefficients, the sigmoid, and the crop to each box (one
  prototype cell of padding, as MMDetection crops): ``masks`` [1, N, H/4, W/4] probabilities over the
  whole input, which otxlite's decoder resizes to the image and thresholds as MMDetection does.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager

import torch
from mmdeploy.core import FUNCTION_REWRITER
from mmdet.structures.bbox import bbox_overlaps

CROP_PADDING = 1  # prototype cells MMDetection adds around each box when it crops a mask


def _fast_nms(boxes: torch.Tensor, scores: torch.Tensor, coeffs: torch.Tensor, cfg: Any) -> tuple[torch.Tensor, ...]:
    """MMDetection's ``fast_nms`` with fixed output sizes: ``scores`` [n, C + 1] (background last)."""
    per_class = scores[:, :-1].t()  # [C, n]
    classes, candidates = per_class.shape
    top_k = min(int(cfg.top_k), candidates)
    top_scores, index = per_class.topk(top_k, dim=1)  # sorted, best first
    class_boxes = boxes[index.reshape(-1)].reshape(classes, top_k, 4)
    class_coeffs = coeffs[index.reshape(-1)].reshape(classes, top_k, -1)
    upper = torch.ones(top_k, top_k, dtype=torch.bool).triu(diagonal=1)  # i < j: box i scores higher
    overlaps = bbox_overlaps(class_boxes, class_boxes) * upper
    keep = (overlaps.max(dim=1).values <= cfg.iou_thr) & (top_scores > cfg.score_thr)
    kept = torch.where(keep, top_scores, torch.zeros_like(top_scores)).reshape(-1)
    final_scores, order = kept.topk(min(int(cfg.max_per_img), classes * top_k))
    dets = torch.cat([class_boxes.reshape(-1, 4)[order], final_scores[:, None]], dim=1)
    labels = torch.div(order, top_k, rounding_mode="floor")
    return dets[None], labels[None], class_coeffs.reshape(classes * top_k, -1)[order][None]


@FUNCTION_REWRITER.register_rewriter(
    func_name="mmdet.models.dense_heads.yolact_head.YOLACTHead.predict_by_feat", backend="openvino")
def yolact_head__predict_by_feat__openvino(self: Any, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor],
                                           coeff_preds: list[torch.Tensor], batch_img_metas: list[dict],
                                           cfg: Any = None, rescale: bool = True,
                                           **kwargs: Any) -> tuple[torch.Tensor, ...]:
    """One image (otxlite exports batch 1): ``dets``, ``labels``, mask ``coefficients`` (module docstring)."""
    cfg = self.test_cfg if cfg is None else cfg
    nms_pre = int(cfg.get("nms_pre", -1))
    priors = self.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores], device=cls_scores[0].device)
    level_boxes, level_scores, level_coeffs, level_priors = [], [], [], []
    for cls_score, bbox_pred, coeff_pred, level_prior in zip(cls_scores, bbox_preds, coeff_preds, priors):
        scores = cls_score[0].permute(1, 2, 0).reshape(-1, self.cls_out_channels).softmax(-1)
        deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
        coeffs = coeff_pred[0].permute(1, 2, 0).reshape(-1, self.num_protos)
        if 0 < nms_pre < scores.shape[0]:
            _, best = scores[:, :-1].max(dim=1).values.topk(nms_pre)
            scores, deltas, coeffs, level_prior = scores[best], deltas[best], coeffs[best], level_prior[best]
        level_boxes.append(deltas)
        level_scores.append(scores)
        level_coeffs.append(coeffs)
        level_priors.append(level_prior)
    boxes = self.bbox_coder.decode(torch.cat(level_priors)[None], torch.cat(level_boxes)[None],  # mmdeploy's
                                   max_shape=batch_img_metas[0]["img_shape"])[0]  # decoder takes a batch
    return _fast_nms(boxes, torch.cat(level_scores), torch.cat(level_coeffs), cfg)


@FUNCTION_REWRITER.register_rewriter(
    func_name="mmdet.models.dense_heads.yolact_head.YOLACTProtonet.predict", backend="openvino")
def yolact_protonet__predict__openvino(self: Any, x: tuple[torch.Tensor, ...], batch_data_samples: list,
                                       rescale: bool = False, results_list: Any = None,
                                       **kwargs: Any) -> tuple[torch.Tensor, ...]:
    """``dets``, ``labels`` and ``masks`` [1, N, H/4, W/4]: each box's cropped mask probabilities."""
    dets, labels, coeffs = results_list
    prototypes = self.protonet(x[0])  # [1, P, h, w]
    height, width = prototypes.shape[-2:]
    masks = torch.matmul(coeffs, prototypes.flatten(2)).sigmoid().reshape(1, -1, height, width)
    input_height, input_width = batch_data_samples[0].metainfo["img_shape"][:2]
    scale = dets.new_tensor([width / input_width, height / input_height])
    corner_a, corner_b = dets[0, :, 0:2] * scale, dets[0, :, 2:4] * scale  # [N, 2]: x, y in prototype cells
    low = (torch.min(corner_a, corner_b) - CROP_PADDING).clamp(min=0)
    high = torch.min(torch.max(corner_a, corner_b) + CROP_PADDING, dets.new_tensor([width, height]))
    columns = torch.arange(width, dtype=dets.dtype)[None, None, :]
    rows = torch.arange(height, dtype=dets.dtype)[None, :, None]
    inside = ((columns >= low[:, None, 0:1]) & (columns < high[:, None, 0:1])
              & (rows >= low[:, None, 1:2]) & (rows < high[:, None, 1:2]))  # [N, h, w]
    return dets, labels, masks * inside[None].to(masks.dtype)


def tracing(config: Any, input_size: tuple[int, int]) -> ContextManager[None]:
    """Nothing to switch while tracing: the rewrites above registered themselves when this module was imported."""
    return nullcontext()
