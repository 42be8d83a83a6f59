"""Model components MMDetection lacks; importing this package registers them in mmdet's MODELS: otxlite's
backbones (here) and each model family's own components (its ``components_module``)."""

from importlib import import_module

from otxlite.families import FAMILIES
from otxlite.models.convnext import ConvNeXt

for _family in FAMILIES.values():
    if _family.components_module:
        import_module(_family.components_module)

__all__ = ["ConvNeXt"]
