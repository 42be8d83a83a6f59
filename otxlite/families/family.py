"""What a model family is: the one record every layer asks instead of keeping its own table.

A family's declaration (its package's ``FAMILY``) is plain data and imports nothing heavy, so templates,
the runtime side and the CLI can read it. Code that needs the PyTorch stack (an export rewrite, a model
component, the dense forward counted for FLOPs) sits in the family's own sub-modules or in functions that
import it when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

STRIDE = 32  # the coarsest feature map of families that pad to it: their input sides are multiples of it
SHARED_INT8_SCOPES = ("/backbone/", "/neck/")  # every family quantizes its backbone and neck
SGD_PLATEAU, MOSAIC_ADAMW = "sgd_plateau", "mosaic_adamw"  # training recipes (built by otxlite.training.recipes)
RECIPES = (SGD_PLATEAU, MOSAIC_ADAMW)
MASK_LAYOUTS = ("roi", "image")
MASK_VALUES = ("probabilities", "logits")
BOX_SOURCES = ("model", "masks")


def flatten_outputs(outputs: Any) -> list[Any]:
    """Nested lists/tuples of tensors -> a flat list (what the FLOP counter traces)."""
    if isinstance(outputs, (list, tuple)):
        return [item for part in outputs for item in flatten_outputs(part)]
    return [outputs]


def plain_dense_forward(model: Any, images: Any) -> tuple[Any, ...]:
    """MMDetection's ``mode='tensor'`` forward: the dense network without post-processing."""
    return tuple(flatten_outputs(model._forward(images)))


@dataclass(frozen=True)
class Family:
    """Everything the rest of otxlite asks about a model family.

    - ``model_type``: the MMDetection detector class of its configs (``model.type``).
    - ``mask_layout``: ``roi`` (one small mask per box, pasted into it) or ``image`` (one mask over the input).
    - ``mask_values``: ``probabilities``, or ``logits`` where the reference model resizes logits before the
      sigmoid (a resized probability map has its 0.5 line elsewhere).
    - ``box_source``: ``model`` (the boxes output), or ``masks`` for box-free families: the model's box is the
      whole input and consumers take a tight box around the mask.
    - ``input_size_multiple``: what ``data.input_size``'s sides must be a multiple of (1: any size).
    - ``recipe``: the training recipe (see ``otxlite.training.recipes``).
    - ``export_module``: the module whose ``tracing(config, input_size)`` context is active while mmdeploy
      traces the model (its rewrites register on import); None: mmdeploy's own rewrites suffice.
    - ``int8_scopes``: name prefixes of the IR layers ``otxlite optimize`` quantizes besides the shared
      backbone and neck (see ``SHARED_INT8_SCOPES``); every other layer stays FP32.
    - ``dense_forward(model, images)``: the forward whose FLOPs a template's ``gigaflops`` counts.
    - ``components_module``: the module registering the family's own model components in MMDetection.
    - ``model_api_type``: the OpenVINO Model API wrapper named in the IR's ``model_info``: ``MaskRCNN`` pastes
      per-box masks into their boxes, ``DETRInstSeg`` resizes whole-image masks to the image.
    """

    name: str
    title: str
    model_type: str
    mask_layout: str
    mask_values: str = "probabilities"
    box_source: str = "model"
    input_size_multiple: int = STRIDE
    recipe: str = SGD_PLATEAU
    export_module: str | None = None
    int8_scopes: tuple[str, ...] = ()
    dense_forward: Callable[[Any, Any], tuple[Any, ...]] = plain_dense_forward
    components_module: str | None = None
    model_api_type: str = "MaskRCNN"

    def __post_init__(self) -> None:
        for value, allowed in ((self.mask_layout, MASK_LAYOUTS), (self.mask_values, MASK_VALUES),
                               (self.box_source, BOX_SOURCES), (self.recipe, RECIPES)):
            if value not in allowed:
                raise ValueError(f"family {self.name}: {value!r} is not one of {allowed}")

    @property
    def quantized_scopes(self) -> tuple[str, ...]:
        """Name prefixes of every layer ``otxlite optimize`` quantizes in this family's IRs."""
        return SHARED_INT8_SCOPES + self.int8_scopes
