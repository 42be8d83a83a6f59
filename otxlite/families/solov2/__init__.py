"""SOLOv2: box-free; a kernel per grid cell convolves a shared mask feature map, matrix NMS keeps the masks."""

from __future__ import annotations

from otxlite.families.family import Family

FAMILY = Family(
    name="solov2",
    title="SOLOv2",
    model_type="SOLOv2",
    mask_layout="image",  # [N, H/4, W/4] probabilities over the whole input
    box_source="masks",  # mmdeploy gives every detection the whole input as its box
    # the mask feature branch and the kernel/category towers (not their output convs)
    int8_scopes=("/mask_head/mask_feature_head", "/mask_head/cls_convs", "/mask_head/kernel_convs"),
    model_api_type="DETRInstSeg",  # Model API's whole-image masks: resized to the image, thresholded at 0.5
)
