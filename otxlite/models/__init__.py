"""Model components MMDetection lacks; importing this package registers them in mmdet's MODELS."""

from otxlite.models.convnext import ConvNeXt
from otxlite.models.rtmdet_ins import RTMDetInsSepBNHeadPlainResize

__all__ = ["ConvNeXt", "RTMDetInsSepBNHeadPlainResize"]
