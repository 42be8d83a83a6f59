"""Keep an INT8 model within a mask mAP bound of its FP32 IR, measured the way ``otxlite eval`` measures.

NNCF's own accuracy control judges the model it holds in memory with its own validation function; the
file otxlite saves differs from that (its FP32 leftovers are stored as FP16), and the drop it reported
was not the drop ``otxlite eval`` then found. Here every candidate is the final model (``finalize``
applied) and is scored by one function the caller gives (``otxlite eval``'s loop over the validation
set). If the drop exceeds the bound, groups of layers (a backbone stage, an FPN convolution, a head
layer) go back to FP32, the most helpful group first (each group's effect measured alone), until the
bound holds or no quantized layer is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otxlite.core.console import console

Score = Callable[[Any], float]  # an openvino.Model -> mask mAP on the validation set


@dataclass
class BoundResult:
    """The chosen INT8 model, its score and what stayed FP32 to reach it."""

    model: Any
    fp32_score: float
    int8_score: float
    fp32_groups: list[str] = field(default_factory=list)
    fp32_layers: int = 0
    evaluations: int = 0

    @property
    def drop(self) -> float:
        return self.fp32_score - self.int8_score


def layer_group(name: str) -> str:
    """The block a layer belongs to: the first two parts of its name (``/backbone/layers.3``, ``/neck/fpn_convs.0``)."""
    return "/".join(name.split("/")[:3])


def quantized_layers(model: Any) -> list[str]:
    """Names of the layers whose activations pass a FakeQuantize (the INT8 layers)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul") and any(
                i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs()):
            names.append(op.get_friendly_name())
    return names


def _float_data(output: Any) -> np.ndarray | None:
    """The float32 value of a constant (possibly stored as FP16 behind a Convert), else None."""
    node = output.get_node()
    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return None
    return node.get_data().astype(np.float32)


def keep_layers_fp32(quantized: Any, fp32: Any, names: set[str]) -> Any:
    """A copy of ``quantized`` in which the named layers compute in FP32 again: their input bypasses its
    FakeQuantize, and their weights and biases (which NNCF's bias correction changes) are the FP32 model's."""
    import openvino.opset13 as ops

    model = quantized.clone()
    originals = {op.get_friendly_name(): op for op in fp32.get_ordered_ops()}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if name not in names or name not in originals:
            continue
        source = op.input(0).get_source_output().get_node()
        if source.get_type_name() == "FakeQuantize":
            op.input(0).replace_source_output(source.input_value(0))
        weights = _float_data(originals[name].input_value(1))
        if weights is not None:
            op.input(1).replace_source_output(ops.constant(weights).output(0))
        for target in op.output(0).get_target_inputs():
            consumer = target.get_node()
            original = originals.get(consumer.get_friendly_name())
            if consumer.get_type_name() != "Add" or original is None:
                continue
            bias_index = 1 - target.get_index()
            bias = _float_data(original.input_value(bias_index))
            if bias is not None and _float_data(consumer.input_value(bias_index)) is not None:
                consumer.input(bias_index).replace_source_output(ops.constant(bias).output(0))
    return model


def quantize_within_bound(quantized: Any, fp32: Any, fp32_score: float, score: Score, max_drop: float,
                          finalize: Callable[[Any], Any]) -> BoundResult:
    """The INT8 model (``finalize``-d, as it will be saved) with the fewest FP32 groups, most helpful first,
    whose ``score`` is within ``max_drop`` of ``fp32_score``; all groups FP32 if none is."""
    layers = quantized_layers(quantized)
    groups: dict[str, set[str]] = {}
    for name in layers:
        groups.setdefault(layer_group(name), set()).add(name)
    evaluations = 0

    def candidate(kept: list[str]) -> tuple[Any, float]:
        nonlocal evaluations
        names = set().union(*(groups[g] for g in kept)) if kept else set()
        model = finalize(keep_layers_fp32(quantized, fp32, names))
        evaluations += 1
        return model, score(model)

    model, int8_score = candidate([])
    console.print(f"INT8 mask mAP {int8_score:.4f}, FP32 {fp32_score:.4f} (drop {fp32_score - int8_score:.4f}, "
                  f"bound {max_drop})")
    if fp32_score - int8_score <= max_drop:
        return BoundResult(model, fp32_score, int8_score, evaluations=evaluations)
    console.print(f"Ranking {len(groups)} groups of INT8 layers by how much mask mAP each gets back in FP32 ...")
    gains = {group: candidate([group])[1] - int8_score for group in groups}
    order = sorted(groups, key=lambda g: gains[g], reverse=True)
    kept: list[str] = []
    for group in order:
        kept.append(group)
        model, int8_score = candidate(kept)
        console.print(f"  + {group} in FP32 (alone: {gains[group]:+.4f}): mask mAP {int8_score:.4f}")
        if fp32_score - int8_score <= max_drop:
            break
    return BoundResult(model, fp32_score, int8_score, kept, sum(len(groups[g]) for g in kept), evaluations)
