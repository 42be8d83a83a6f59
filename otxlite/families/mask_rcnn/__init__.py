"""Mask R-CNN: two stages (an RPN proposes boxes, RoI heads classify them and predict a 28x28 mask per box)."""

from __future__ import annotations

from typing import Any

from otxlite.families.family import Family, flatten_outputs


def dense_forward(model: Any, images: Any) -> tuple[Any, ...]:
    """``mode='tensor'`` with the RPN's post-processing replaced by a fixed set of ``test_cfg.rpn.max_per_img``
    proposals, so the count does not depend on the weights: the box head scores all, the mask head the first
    100. The RPN's box decoding and NMS are not counted."""
    import torch
    from mmengine.structures import InstanceData

    height, width = images.shape[-2:]
    feats = model.extract_feat(images)
    rpn_outs = model.rpn_head(feats)
    count = int(model.test_cfg.rpn.max_per_img)
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.8
    wh = (torch.rand(count, 2, generator=generator) * 0.2 + 0.01) * torch.tensor([width, height])
    proposals = InstanceData(bboxes=torch.cat([xy, xy + wh], dim=1))
    roi_outs = model.roi_head.forward(feats, [proposals])
    return tuple(flatten_outputs(rpn_outs) + flatten_outputs(roi_outs))


FAMILY = Family(
    name="mask_rcnn",
    title="Mask R-CNN",
    model_type="MaskRCNN",
    mask_layout="roi",
    export_module="otxlite.families.mask_rcnn.export",
    # the RPN's shared conv, the box head's shared FCs, the mask head's conv tower (not the output layers)
    int8_scopes=("/rpn_head/rpn_conv", "/bbox_head/shared_fcs", "/mask_head/convs"),
    dense_forward=dense_forward,
)
