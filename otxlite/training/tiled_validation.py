"""Validation and testing of a model trained on tiles as its users will run it: each whole image cut into the
same tiles (and the whole image, if the settings say so), every tile through the model at its input size, the
pieces merged by mask-aware NMS (``otxlite.core.tiling``, the runtime's merge)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from mmdet.registry import LOOPS
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop, ValLoop
from mmengine.structures import InstanceData

from otxlite.core.tiling import TilingSettings
from otxlite.training.inference import model_detector, tiled_detector


def tiled_loop_config(loop: str, tiling: TilingSettings, input_size: Sequence[int]) -> dict[str, Any]:
    """``val_cfg`` (``loop="val"``) or ``test_cfg`` (``"test"``) of a tiled model."""
    return dict(type="TiledValLoop" if loop == "val" else "TiledTestLoop", tiling=tiling.to_dict(),
                input_size=[int(v) for v in input_size])


class _TiledIterations:
    """What both loops share: iterations that detect on tiles of whole images (batch 1, original size)."""

    runner: Any
    evaluator: Any
    stage: str  # "val" or "test": the hooks called around each iteration

    def __init__(self, runner: Any, dataloader: Any, evaluator: Any, tiling: dict[str, Any],
                 input_size: Sequence[int], fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)  # mmengine's ValLoop or TestLoop
        self.tiling = TilingSettings.from_dict(tiling)
        self.input_size = (int(input_size[0]), int(input_size[1]))

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict[str, Any]) -> None:
        self.runner.call_hook(f"before_{self.stage}_iter", batch_idx=idx, data_batch=data_batch)
        outputs = self.predict(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(f"after_{self.stage}_iter", batch_idx=idx, data_batch=data_batch, outputs=outputs)

    @torch.no_grad()
    def predict(self, data_batch: dict[str, Any]) -> list[Any]:
        """The batch's data samples with ``pred_instances`` in original pixels (what ``val_step`` gives)."""
        model = self.runner.model.module if is_model_wrapper(self.runner.model) else self.runner.model
        detect = tiled_detector(model_detector(model, self.input_size), self.tiling)
        outputs = []
        for image, sample in zip(data_batch["inputs"], data_batch["data_samples"]):
            boxes, scores, labels, masks = detect(image.permute(1, 2, 0).numpy())  # BGR, as loaded
            sample.pred_instances = InstanceData(bboxes=torch.from_numpy(boxes), scores=torch.from_numpy(scores),
                                                 labels=torch.from_numpy(labels), masks=torch.from_numpy(masks))
            outputs.append(sample)
        return outputs


@LOOPS.register_module()
class TiledValLoop(_TiledIterations, ValLoop):
    """mmengine's ``ValLoop`` on tiles of whole images (validation during training)."""

    stage = "val"


@LOOPS.register_module()
class TiledTestLoop(_TiledIterations, TestLoop):
    """mmengine's ``TestLoop`` on tiles of whole images (``otxlite eval`` of a tiled ``weights.pth``)."""

    stage = "test"
