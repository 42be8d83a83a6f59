"""The OpenVINO predictor: resize, infer, decode boxes and paste masks into the original image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from otxlite.errors import OtxliteError
from otxlite.inference.metadata import ModelMetadata, read_metadata

MASK_THRESHOLD = 0.5


@dataclass
class Prediction:
    """Detections in original image pixels: boxes [N,4] xyxy, scores [N], labels [N], masks [N,H,W] bool."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def above(self, threshold: float) -> "Prediction":
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Prediction(self.boxes[keep], self.scores[keep], self.labels[keep], self.masks[keep])


def paste_roi_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-box probability masks [N,h,w] -> binary full-image masks [N,H,W]."""
    full = np.zeros((len(masks), height, width), dtype=bool)
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
        x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
        w, h = max(x1 - x0, 1), max(y1 - y0, 1)
        resized = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= MASK_THRESHOLD
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if cx1 > cx0 and cy1 > cy0:
            full[i, cy0:cy1, cx0:cx1] = resized[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return full


def resize_image_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Whole-image probability masks [N,h,w] (any scale) -> binary masks [N,H,W]."""
    return np.stack([cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                     >= MASK_THRESHOLD for m in masks]) if len(masks) else np.zeros((0, height, width), bool)


def preprocess(image: np.ndarray, input_size: tuple[int, int], dtype: Any = np.float32) -> np.ndarray:
    """BGR image -> [1,3,H,W] at ``input_size`` (width, height); normalization is inside the IR."""
    resized = cv2.resize(image, tuple(input_size), interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1)[None].astype(dtype)


def decode_outputs(outputs: dict[str, np.ndarray], metadata: ModelMetadata, height: int, width: int) -> Prediction:
    """Raw IR outputs -> detections in original pixels, masks pasted and thresholded."""
    dets = np.asarray(outputs["boxes"]).reshape(-1, 5)
    labels = np.asarray(outputs["labels"]).reshape(-1).astype(np.int64)
    masks = np.asarray(outputs["masks"])
    masks = masks.reshape(-1, *masks.shape[-2:])
    keep = dets[:, 4] > 0
    dets, labels, masks = dets[keep], labels[keep], masks[keep]
    in_w, in_h = metadata.input_size
    boxes = dets[:, :4] * np.array([width / in_w, height / in_h] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    if metadata.mask_layout == "roi":
        full = paste_roi_masks(masks, boxes, height, width)
    else:
        full = resize_image_masks(masks, height, width)
        boxes = _boxes_of(full, boxes)
    return Prediction(boxes.astype(np.float32), dets[:, 4].astype(np.float32), labels, full)


def request_outputs(request: Any) -> dict[str, np.ndarray]:
    """Copies of an infer request's three outputs."""
    return {name: request.get_tensor(name).data.copy() for name in ("boxes", "labels", "masks")}


class Predictor:
    """An exported otxlite IR compiled on an OpenVINO device."""

    def __init__(self, xml: Path | Any, device: str = "CPU", hint: str = "LATENCY") -> None:
        """``xml``: an IR file, or an ``openvino.Model`` in memory (e.g. a candidate INT8 model)."""
        import openvino as ov

        core = ov.Core()
        if isinstance(xml, ov.Model):
            model, xml = xml, Path("<in-memory model>")
        else:
            try:
                model = core.read_model(str(xml))
            except RuntimeError as err:
                raise OtxliteError(f"--load-weights {xml}: OpenVINO cannot read this IR ({err}).") from err
        self.metadata: ModelMetadata = read_metadata(model, Path(xml))
        # f32: CPUs with bf16 units would otherwise run FP32 layers in bf16 and drift from PyTorch's results.
        self.compiled = core.compile_model(model, device, {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"})
        self.input_dtype = self.compiled.input(0).get_element_type().to_dtype()
        self.output_names = {name for output in self.compiled.outputs for name in output.get_names()}
        for name in ("boxes", "labels", "masks"):
            if name not in self.output_names:
                raise OtxliteError(f"--load-weights {xml}: the IR has no '{name}' output; re-export it with otxlite.")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """BGR image -> the model's input tensor."""
        return preprocess(image, self.metadata.input_size, self.input_dtype)

    def postprocess(self, outputs: dict[str, np.ndarray], height: int, width: int) -> Prediction:
        """Raw outputs -> detections in original pixels."""
        return decode_outputs(outputs, self.metadata, height, width)

    def predict(self, image: np.ndarray) -> Prediction:
        """Detections for one BGR image."""
        request = self.compiled.create_infer_request()
        request.infer({0: self.preprocess(image)})
        return self.postprocess(request_outputs(request), *image.shape[:2])

    def predict_async(self, images: Iterable[tuple[Any, np.ndarray]],
                      on_result: Callable[[Any, Prediction], None], jobs: int = 0) -> None:
        """Run many images through a pool of asynchronous infer requests, ``on_result(key, prediction)``
        per image in input order. While the main thread decodes one result, the other requests keep the
        CPU busy. (No Python callbacks on OpenVINO's threads: tearing those down can abort the process.)"""
        count = jobs or int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        requests = [self.compiled.create_infer_request() for _ in range(count)]
        pending: list[tuple[Any, tuple[int, int]] | None] = [None] * count

        def finish(slot: int) -> None:
            key, (height, width) = pending[slot]  # type: ignore[misc]
            requests[slot].wait()
            pending[slot] = None
            on_result(key, self.postprocess(request_outputs(requests[slot]), height, width))

        slot = 0
        for key, image in images:
            if pending[slot] is not None:
                finish(slot)
            requests[slot].start_async({0: self.preprocess(image)})
            pending[slot] = (key, image.shape[:2])
            slot = (slot + 1) % count
        for offset in range(count):  # the rest, oldest first
            if pending[(slot + offset) % count] is not None:
                finish((slot + offset) % count)


def _boxes_of(masks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Tight boxes around masks (SOLOv2 predicts no boxes); empty masks keep ``fallback``."""
    boxes = fallback.copy()
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes
