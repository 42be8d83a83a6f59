"""RTMDet-Ins: real-time single stage; each detection's dynamic kernel convolves a stride-8 mask feature map."""

from __future__ import annotations

from otxlite.families.family import MOSAIC_ADAMW, Family

FAMILY = Family(
    name="rtmdet_ins",
    title="RTMDet-Ins",
    model_type="RTMDet",
    mask_layout="image",  # [N, H/8, W/8] over the whole input, beside its own boxes
    mask_values="logits",  # MMDetection resizes the logits before the sigmoid (0.07 mask mAP on probabilities)
    recipe=MOSAIC_ADAMW,
    export_module="otxlite.families.rtmdet_ins.export",
    components_module="otxlite.families.rtmdet_ins.model",
    # the shared conv towers and the mask feature convs (not their 1x1 outputs)
    int8_scopes=("/bbox_head/cls_convs", "/bbox_head/reg_convs", "/bbox_head/kernel_convs",
                 "/bbox_head/mask_head/fusion_conv", "/bbox_head/mask_head/stacked_convs"),
    model_api_type="DETRInstSeg",  # Model API's whole-image masks: resized to the image, thresholded at 0.5
)
