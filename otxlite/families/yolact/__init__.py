"""YOLACT: single stage; each detection's coefficients combine shared prototype masks, cropped to its box."""

from __future__ import annotations

from typing import Any

from otxlite.families.family import Family, flatten_outputs


def dense_forward(model: Any, images: Any) -> tuple[Any, ...]:
    """Backbone, neck, box head (scores, boxes, mask coefficients on every level) and the protonet. YOLACT's own
    ``mode='tensor'`` forward needs ground truth (it runs the loss); the prototype x coefficient products, the
    crop and fast NMS are post-processing and not counted."""
    feats = model.extract_feat(images)
    return tuple(flatten_outputs(model.bbox_head(feats)) + [model.mask_head.protonet(feats[0])])


FAMILY = Family(
    name="yolact",
    title="YOLACT",
    model_type="YOLACT",
    mask_layout="image",  # [N, H/4, W/4] probabilities, each cropped to its box
    input_size_multiple=1,  # no padding: its FPN resizes each level to the next one's size
    export_module="otxlite.families.yolact.export",
    # the head's shared conv and the protonet's 3x3 convs (not its 1x1 prototype output)
    int8_scopes=("/bbox_head/head_convs", "/protonet/protonet.0/", "/protonet/protonet.2/", "/protonet/protonet.4/",
                 "/protonet/protonet.8/"),
    dense_forward=dense_forward,
    model_api_type="DETRInstSeg",  # Model API's whole-image masks: resized to the image, thresholded at 0.5
)
