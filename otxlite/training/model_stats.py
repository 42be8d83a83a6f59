"""A template's parameter count, FP32 size and FLOPs, as its YAML states them (``scripts/compute_model_stats.py``
writes them there and checks them).

* The model is the template's MMDetection model built with 80 classes (COCO), so numbers are comparable with
  published COCO figures; ``Pretrained`` init configs are dropped (counts do not depend on the weights).
* ``size``: FP32 size of the parameters in MB (10**6 bytes); buffers (BatchNorm statistics) are not included.
* ``gigaflops``: one image (batch 1, eval mode) at ``data.input_size`` padded up to the preprocessor's
  ``pad_size_divisor``, counted with ``mmengine.analysis.FlopAnalyzer`` (fvcore's counter), divided by 1e9;
  one multiply-add counts as one FLOP (fvcore's and OTX's convention). The forward counted is the model
  family's ``dense_forward`` (``otxlite.families``): the dense network without post-processing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from otxlite.core.templates import Template
from otxlite.families import family_of_model

NUM_CLASSES = 80  # COCO, so the numbers compare with published ones


@dataclass
class Stats:
    """Computed statistics of one template."""

    template: Template
    params: int
    size: float  # MB (1e6 bytes) of FP32 parameters
    gigaflops: float | None  # None with --size-only
    unsupported: dict[str, int]


def build_model(template: Template, num_classes: int = NUM_CLASSES) -> Any:
    """The template's MMDetection model with random weights, in eval mode."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict
    from mmengine.utils import import_modules_from_strings

    from otxlite.training.config import drop_pretrained, load_model_config

    model_cfg, imports = load_model_config(template, num_classes)
    drop_pretrained(model_cfg)
    register_all_modules()
    if imports:
        import_modules_from_strings(imports)
    # ConfigDict, not the plain dict: mmdet's detectors read train_cfg.rpn / test_cfg.rpn as attributes.
    model = MODELS.build(ConfigDict(model_cfg))
    model.eval()
    return model


def input_shape(template: Template, model: Any) -> tuple[int, int]:
    """(height, width) the network sees: data.input_size padded up to the preprocessor's divisor."""
    width, height = template.hyper_parameters["data"]["input_size"]
    divisor = int(getattr(model.data_preprocessor, "pad_size_divisor", 1) or 1)
    return math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor


def count_flops(model: Any, height: int, width: int) -> tuple[int, dict[str, int]]:
    """FLOPs (one multiply-add = 1) of the model family's ``dense_forward`` of one image; unsupported ops."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    family = family_of_model(type(model).__name__)

    class DenseForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> tuple:
            return family.dense_forward(self.model, images)

    images = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        analyzer = FlopAnalyzer(DenseForward().eval(), (images,))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = analyzer.total()
        unsupported = dict(analyzer.unsupported_ops())
    return int(total), unsupported


def compute(template: Template, size_only: bool = False) -> Stats:
    """Statistics of one template."""
    model = build_model(template)
    params = sum(p.numel() for p in model.parameters())
    flops, unsupported = (None, {}) if size_only else count_flops(model, *input_shape(template, model))
    return Stats(template=template, params=params, size=params * 4 / 1e6,
                 gigaflops=None if flops is None else flops / 1e9, unsupported=unsupported)
