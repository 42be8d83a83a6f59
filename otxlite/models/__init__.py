"""Model components MMDetection lacks; importing this package registers them in mmdet's MODELS."""

from otxlite.models.convnext import ConvNeXt

__all__ = ["ConvNeXt"]
