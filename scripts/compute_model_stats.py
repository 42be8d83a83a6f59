#!/usr/bin/env python
"""Compute each template's ``gigaflops`` and ``size`` and write them into the template YAML.

Usage::

    .venv/bin/python scripts/compute_model_stats.py                  # all templates, rewrite the YAMLs
    .venv/bin/python scripts/compute_model_stats.py MaskRCNN-ResNet50 # some templates (name, id or path)
    .venv/bin/python scripts/compute_model_stats.py --check          # exit 1 if a stored value is off by > 1 %
    .venv/bin/python scripts/compute_model_stats.py --check --size-only  # sizes only: no forward pass, seconds

What is counted (so the numbers can be compared with published ones):

* The model is the template's MMDetection model built with 80 classes (COCO), so numbers are
  comparable with published COCO figures; the class count changes them only slightly.
  ``Pretrained`` init configs are dropped (random weights: counts do not depend on the weights).
* ``size`` is the FP32 size of the model's parameters in MB, where 1 MB = 10**6 bytes:
  ``number_of_parameters * 4 / 1e6``. Buffers (BatchNorm running statistics) are not included.
* ``gigaflops`` is the FLOP count of one image (batch 1, eval mode) at the template's
  ``hyper_parameters.data.input_size`` ([width, height], padded up to the data preprocessor's
  ``pad_size_divisor``), counted with ``mmengine.analysis.FlopAnalyzer`` (a port of fvcore) and
  divided by 1e9. As in fvcore and in OTX's templates, **one multiply-add counts as one FLOP**
  (so these are GMACs; multiply by 2 for "two FLOPs per multiply-add" figures). Convolutions,
  linear layers, matmuls, norms and upsampling are counted; element-wise activations, additions,
  pooling and custom mmcv ops (RoIAlign) are not, as in fvcore.
* The forward counted is MMDetection's ``mode='tensor'`` forward (``model._forward``), the dense
  network without post-processing:

  - SOLOv2 (single-stage): backbone + neck + the whole SOLOv2 mask head (kernel, category and
    mask-feature branches over all grids). Matrix NMS and the dynamic mask convolution of
    ``predict`` are post-processing and not counted.
  - YOLACT (single-stage, but its ``mode='tensor'`` forward runs the loss): backbone + neck + box head
    (scores, boxes, mask coefficients on every level) + the protonet. The prototype x coefficient
    products, the crop and fast NMS are post-processing and not counted.
  - Mask R-CNN (two-stage): backbone + neck + RPN head convolutions, then the RoI heads as
    ``mode='tensor'`` runs them: the box head on ``test_cfg.rpn.max_per_img`` proposals
    (1000) and the mask head on the first 100 of them. ``mode='tensor'`` takes the proposals
    from RPN post-processing, whose count depends on the weights; here a fixed set of that many
    proposals is used instead, so the number is deterministic (it equals the ``mode='tensor'``
    count whenever the RPN returns its maximum, the usual case at these input sizes). The
    RPN's box decoding and NMS are not counted.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from otxlite.core.errors import OtxliteError  # noqa: E402
from otxlite.core.fileio import write_text_atomic  # noqa: E402
from otxlite.core.templates import Template, list_templates, load_template  # noqa: E402

NUM_CLASSES = 80  # COCO, so the numbers compare with published ones
TOLERANCE = 0.01  # --check: relative difference allowed between stored and computed values
COMMENT = (
    "# gigaflops and size at data.input_size with 80 (COCO) classes, computed (not copied) by\n"
    "# scripts/compute_model_stats.py: gigaflops = GFLOPs of one image's mode='tensor' forward, one\n"
    "# multiply-add = 1 FLOP (fvcore/OTX convention); size = MB (10^6 bytes) of FP32 parameters.\n"
)


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


def _flatten(outs: Any) -> list:
    if isinstance(outs, (list, tuple)):
        return [t for item in outs for t in _flatten(item)]
    return [outs]


def count_flops(model: Any, height: int, width: int) -> tuple[int, dict[str, int]]:
    """FLOPs (one multiply-add = 1) of the ``mode='tensor'`` forward of one image; unsupported ops."""
    import torch
    from mmdet.models.detectors import YOLACT, TwoStageDetector
    from mmengine.analysis import FlopAnalyzer
    from mmengine.structures import InstanceData

    class DenseForward(torch.nn.Module):
        """``model._forward`` with the RPN's post-processing replaced by a fixed set of proposals."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> tuple:
            if isinstance(self.model, YOLACT):  # its mode='tensor' forward needs ground truth (it runs the loss)
                feats = self.model.extract_feat(images)
                return tuple(_flatten(self.model.bbox_head(feats)) + [self.model.mask_head.protonet(feats[0])])
            if not isinstance(self.model, TwoStageDetector):
                return tuple(_flatten(self.model._forward(images)))
            feats = self.model.extract_feat(images)
            rpn_outs = self.model.rpn_head(feats)  # the dense part of rpn_head.predict
            count = int(self.model.test_cfg.rpn.max_per_img)
            generator = torch.Generator().manual_seed(0)
            xy = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.8
            wh = (torch.rand(count, 2, generator=generator) * 0.2 + 0.01) * torch.tensor([width, height])
            proposals = InstanceData(bboxes=torch.cat([xy, xy + wh], dim=1))
            roi_outs = self.model.roi_head.forward(feats, [proposals])  # box head on all, mask head on 100
            return tuple(_flatten(rpn_outs) + _flatten(roi_outs))

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


def rewrite_stats(text: str, gigaflops: float | None, size: float) -> str:
    """``text`` (a template YAML) with new ``gigaflops``/``size`` lines and the comment above them.

    ``gigaflops=None`` keeps the stored value. Every other line is kept byte for byte.
    """
    lines = text.splitlines(keepends=True)

    def index(key: str) -> int:
        found = [i for i, line in enumerate(lines) if line.startswith(f"{key}:")]
        if len(found) != 1:
            raise OtxliteError(f"expected exactly one top-level '{key}:' line, found {len(found)}")
        return found[0]

    def ending(line: str) -> str:
        return line[len(line.rstrip("\r\n")):] or "\n"

    g, s = index("gigaflops"), index("size")
    if gigaflops is not None:
        lines[g] = f"gigaflops: {gigaflops:.2f}{ending(lines[g])}"
    lines[s] = f"size: {size:.2f}{ending(lines[s])}"
    first = min(g, s)
    start = first
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    newline = ending(lines[first])
    comment = [line + newline for line in COMMENT.splitlines()]
    return "".join(lines[:start] + comment + lines[first:])


def _differs(stored: Any, computed: float) -> bool:
    if not isinstance(stored, (int, float)) or isinstance(stored, bool):
        return True
    return abs(stored - computed) > TOLERANCE * abs(computed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("templates", nargs="*", help="template names, ids or paths (default: all)")
    parser.add_argument("--check", action="store_true",
                        help=f"do not write; exit 1 if a stored value differs by more than {TOLERANCE:.0%}")
    parser.add_argument("--size-only", action="store_true", help="compute sizes only (no forward pass)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    try:
        templates = [load_template(ref) for ref in args.templates] if args.templates else list_templates()
    except OtxliteError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2

    failures = []
    print(f"{'template':26} {'input':>9} {'params':>12} {'size MB':>8} {'GFLOPs':>8}")
    for template in templates:
        stats = compute(template, size_only=args.size_only)
        width, height = template.hyper_parameters["data"]["input_size"]
        flops = "-" if stats.gigaflops is None else f"{stats.gigaflops:.2f}"
        print(f"{template.name:26} {width:>4}x{height:<4} {stats.params:>12,} {stats.size:>8.2f} {flops:>8}", flush=True)
        if stats.unsupported:
            skipped = ", ".join(f"{op} x{n}" for op, n in sorted(stats.unsupported.items()))
            print(f"    not counted: {skipped}")
        if args.check:
            checks = [("size", template.size, stats.size)]
            if stats.gigaflops is not None:
                checks.append(("gigaflops", template.gigaflops, stats.gigaflops))
            for key, stored, computed in checks:
                if _differs(stored, computed):
                    failures.append(f"{template.path}: {key} is {stored}, computed {computed:.2f}")
        else:
            path = template.path
            write_text_atomic(path, rewrite_stats(path.read_bytes().decode("utf-8"), stats.gigaflops, stats.size))
    if failures:
        print("Stored values differ from the computed ones by more than "
              f"{TOLERANCE:.0%}; run scripts/compute_model_stats.py to update them:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
