"""BatchNorm running statistics recomputed for the current weights (detectron2's PreciseBN idea).

In training mode BatchNorm normalises with the statistics of each batch; in eval mode it uses running
averages that trail the weights (by ``1/momentum`` iterations: 100 with MMDetection's EfficientNet
momentum of 0.01). From random weights, or on a small dataset, the weights move faster than those
averages, so a model that trains well detects nothing in eval mode. Recomputing the averages with
the final weights over a few training batches removes the lag.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def updating_batchnorms(model: torch.nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers whose running statistics training updates (``norm_eval`` layers excluded)."""
    was_training = model.training
    model.train()  # mmdet backbones with norm_eval=True put their BN layers back into eval mode here
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats and m.training]
    model.train(was_training)
    return layers


def _features_only(model: torch.nn.Module, layers: list[_BatchNorm]) -> bool:
    """True when every layer is in the backbone or neck, so ``extract_feat`` reaches them all."""
    if not hasattr(model, "extract_feat"):
        return False
    inside = {id(m) for name in ("backbone", "neck") if hasattr(model, name) for m in getattr(model, name).modules()}
    return all(id(layer) in inside for layer in layers)


def _repeat(batches: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``batches`` again and again (a data loader draws new augmentations each pass)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return


@torch.no_grad()
def recompute_batchnorm_statistics(model: torch.nn.Module, batches: Iterable[Any], num_batches: int) -> int:
    """Reset the running statistics of ``model``'s BatchNorm layers and average them over ``num_batches``
    training batches (mmengine data batches; the loader is iterated again if it has fewer). Returns the batches used."""
    layers = updating_batchnorms(model)
    if not layers or num_batches < 1:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    features_only = _features_only(model, layers)
    was_training = model.training
    model.train()
    used = 0
    try:
        for data in itertools.islice(_repeat(batches), num_batches):
            data = model.data_preprocessor(data, True)
            if features_only:
                model.extract_feat(data["inputs"])
            else:
                model(**data, mode="tensor")
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    return used
