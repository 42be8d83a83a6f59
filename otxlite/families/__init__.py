"""The registry of model families (one package each; see ``family.py`` for what a family declares).

Adding a family: a package here with its ``FAMILY`` (and, where needed, an ``export`` module with its
rewrites and a ``model`` module with its components), its entry in ``FAMILIES``, a model config and a
template naming it (``family:``), and its tests.
"""

from __future__ import annotations

from otxlite.families.family import Family
from otxlite.families.mask_rcnn import FAMILY as MASK_RCNN
from otxlite.families.rtmdet_ins import FAMILY as RTMDET_INS
from otxlite.families.solov2 import FAMILY as SOLOV2
from otxlite.families.yolact import FAMILY as YOLACT

FAMILIES: dict[str, Family] = {family.name: family for family in (MASK_RCNN, SOLOV2, RTMDET_INS, YOLACT)}


class UnknownFamily(ValueError):
    """A family name or detector type no registered family has."""


def family_named(name: str) -> Family:
    """The family called ``name`` (a template's ``family:``)."""
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown model family '{name}'; the families are {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_model(model_type: str) -> Family:
    """The family whose configs build the MMDetection detector ``model_type``."""
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    raise UnknownFamily(f"no otxlite model family builds a '{model_type}' detector; the families build "
                        f"{', '.join(f.model_type for f in FAMILIES.values())}")
