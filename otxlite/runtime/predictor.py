"""The OpenVINO predictor: resize, infer through a pool of requests, decode boxes and paste masks into the
original image. Every OpenVINO consumer (predict, eval, the INT8 accuracy control, serve) runs through it."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from otxlite.core.artifacts import MASK_LOGITS, ModelMetadata, read_metadata
from otxlite.core.errors import OtxliteError
from otxlite.core.tiling import Piece, Window, merge, pieces_of, tile_windows



def mask_output(metadata: ModelMetadata) -> str:
    """The output otxlite decodes masks from: the logits where the family resizes logits, else ``masks``."""
    return MASK_LOGITS if metadata.mask_values == "logits" else "masks"


@dataclass
class Prediction:
    """Detections in original image pixels: boxes [N,4] xyxy, scores [N], labels [N], masks [N,H,W] bool."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def at_least(self, threshold: float) -> "Prediction":
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Prediction(self.boxes[keep], self.scores[keep], self.labels[keep], self.masks[keep])


def paste_roi_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int, threshold: float) -> np.ndarray:
    """Per-box probability masks [N,h,w] -> binary full-image masks [N,H,W], sampled as MMDetection pastes them
    (``_do_paste_mask``): each pixel centre mapped into the box's exact extent, bilinear, zero outside the mask."""
    full = np.zeros((len(masks), height, width), dtype=bool)
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        left, top = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        right, bottom = min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, height)
        if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
            continue
        rows, cols = mask.shape
        along_x = _bilinear((np.arange(left, right) + 0.5 - x0) / (x1 - x0) * cols - 0.5, cols)
        along_y = _bilinear((np.arange(top, bottom) + 0.5 - y0) / (y1 - y0) * rows - 0.5, rows)
        full[i, top:bottom, left:right] = along_y @ mask.astype(np.float32) @ along_x.T >= threshold
    return full


def _bilinear(coords: np.ndarray, size: int) -> np.ndarray:
    """[len(coords), size] weights of linear interpolation at ``coords`` (pixel units, centres at integers),
    zero outside ``0..size-1`` (grid_sample's zero padding)."""
    weights = np.zeros((len(coords), size), np.float32)
    first = np.floor(coords).astype(np.int64)
    frac = (coords - first).astype(np.float32)
    for index, weight in ((first, 1 - frac), (first + 1, frac)):
        inside = (index >= 0) & (index < size)
        weights[np.nonzero(inside)[0], index[inside]] += weight[inside]
    return weights


def resize_image_masks(masks: np.ndarray, height: int, width: int, threshold: float) -> np.ndarray:
    """Whole-image masks [N,h,w] (any scale; probabilities or logits) -> binary masks [N,H,W]."""
    return np.stack([cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                     >= threshold for m in masks]) if len(masks) else np.zeros((0, height, width), bool)


def preprocess(image: np.ndarray, input_size: tuple[int, int], dtype: Any = np.float32) -> np.ndarray:
    """BGR image -> [1,3,H,W] at ``input_size`` (width, height); normalization is inside the IR."""
    resized = cv2.resize(image, tuple(input_size), interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1)[None].astype(dtype)


def decode_outputs(outputs: dict[str, np.ndarray], metadata: ModelMetadata, height: int, width: int,
                   threshold: float | None = None) -> Prediction:
    """Raw IR outputs -> detections in original pixels, masks pasted and thresholded. Detections scoring
    under ``threshold`` are dropped first, so only kept ones cost a full-size mask (``None``: keep all)."""
    dets = np.asarray(outputs["boxes"]).reshape(-1, 5)
    labels = np.asarray(outputs["labels"]).reshape(-1).astype(np.int64)
    masks = np.asarray(outputs[mask_output(metadata)])
    masks = masks.reshape(-1, *masks.shape[-2:])
    keep = dets[:, 4] > 0 if threshold is None else dets[:, 4] >= threshold
    dets, labels, masks = dets[keep], labels[keep], masks[keep]
    in_w, in_h = metadata.input_size
    boxes = dets[:, :4] * np.array([width / in_w, height / in_h] * 2, dtype=np.float32)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    edge = metadata.mask_threshold
    if metadata.mask_values == "logits":
        edge = float(np.log(edge / (1.0 - edge)))  # the same edge on the logit scale
    if metadata.mask_layout == "roi":
        full = paste_roi_masks(masks, boxes, height, width, edge)
    else:
        full = resize_image_masks(masks, height, width, edge)
    if metadata.box_source == "masks":
        boxes = _boxes_of(full, boxes)
    return Prediction(boxes.astype(np.float32), dets[:, 4].astype(np.float32), labels, full)


def request_outputs(request: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Copies of an infer request's outputs ``names``."""
    return {name: request.get_tensor(name).data.copy() for name in names}


class RequestPool:
    """The infer requests of one compiled model, shared by every caller.

    ``infer`` borrows one idle request (thread-safe: serve's worker threads call it at once); ``pipelined``
    borrows them all and keeps them busy while the caller's thread decodes finished results. No Python code
    runs on OpenVINO's own threads (tearing down an ``AsyncInferQueue`` with a Python callback can abort the
    process)."""

    def __init__(self, compiled: Any, output_names: list[str], size: int = 0) -> None:
        # Twice the device's optimal number (default): while the caller decodes one result, each stream still
        # has a request queued. A 100-tile prediction on 2 cores: 2.45 s with 4 requests, 2.59 s with 2.
        size = size or 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.size = size
        self.output_names = output_names  # the outputs each result copies
        self.borrowing = threading.Lock()  # two pipelined callers each holding part of the pool would deadlock
        self.idle: queue.Queue = queue.Queue()
        for _ in range(size):
            self.idle.put(compiled.create_infer_request())

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs for one input tensor."""
        request = self.idle.get()
        try:
            request.infer({0: tensor})
            return request_outputs(request, self.output_names)
        finally:
            self.idle.put(request)

    def pipelined(self, inputs: Iterable[tuple[Any, np.ndarray]],
                  on_outputs: Callable[[Any, dict[str, np.ndarray]], None]) -> None:
        """``on_outputs(key, outputs)`` for every ``(key, tensor)``, in input order."""
        with self.borrowing:
            requests = [self.idle.get() for _ in range(self.size)]
        pending: list[Any] = [None] * self.size
        busy = [False] * self.size

        def finish(slot: int) -> None:
            requests[slot].wait()
            busy[slot] = False
            on_outputs(pending[slot], request_outputs(requests[slot], self.output_names))

        try:
            slot = 0
            for key, tensor in inputs:
                if busy[slot]:
                    finish(slot)
                requests[slot].start_async({0: tensor})
                pending[slot], busy[slot] = key, True
                slot = (slot + 1) % self.size
            for offset in range(self.size):  # the rest, oldest first
                if busy[(slot + offset) % self.size]:
                    finish((slot + offset) % self.size)
        finally:
            for slot, request in enumerate(requests):  # an exception in on_outputs: let the others finish
                if busy[slot]:
                    request.wait()
                self.idle.put(request)


def read_ir(xml: Path, core: Any = None) -> tuple[Any, ModelMetadata]:
    """An IR file as OpenVINO reads it, and the metadata otxlite's export put in it (one paragraph if either fails)."""
    import openvino as ov

    try:
        model = (core or ov.Core()).read_model(str(xml))
    except RuntimeError as err:
        raise OtxliteError(f"--load-weights {xml}: OpenVINO cannot read this IR ({err}).") from err
    return model, read_metadata(model, xml)


class Predictor:
    """An exported otxlite IR compiled on an OpenVINO device, with its request pool."""

    def __init__(self, xml: Path | Any, device: str = "CPU", hint: str = "LATENCY", threads: int = 0) -> None:
        """``xml``: an IR file, or an ``openvino.Model`` in memory (e.g. a candidate INT8 model); ``threads``: the
        CPU threads OpenVINO may use (0: every core)."""
        import openvino as ov

        core = ov.Core()
        if isinstance(xml, ov.Model):
            model, xml = xml, Path("<in-memory model>")
            self.metadata: ModelMetadata = read_metadata(model, Path(xml))
        else:
            model, self.metadata = read_ir(Path(xml), core)
        # f32: CPUs with bf16 units would otherwise run FP32 layers in bf16 and drift from PyTorch's results.
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, device, config)
        self.input_dtype = self.compiled.input(0).get_element_type().to_dtype()
        output_names = {name for output in self.compiled.outputs for name in output.get_names()}
        needed = ["boxes", "labels", mask_output(self.metadata)]
        for name in needed:
            if name not in output_names:
                raise OtxliteError(f"--load-weights {xml}: the IR has no '{name}' output; re-export it with otxlite.")
        self.pool = RequestPool(self.compiled, needed)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """BGR image -> the model's input tensor."""
        return preprocess(image, self.metadata.input_size, self.input_dtype)

    def postprocess(self, outputs: dict[str, np.ndarray], height: int, width: int,
                    threshold: float | None = None) -> Prediction:
        """Raw outputs -> detections in original pixels (see ``decode_outputs``)."""
        return decode_outputs(outputs, self.metadata, height, width, threshold)

    def predict(self, image: np.ndarray, threshold: float | None = None) -> Prediction:
        """Detections for one BGR image (tiled when the model was trained on tiles)."""
        if self.metadata.tiling is not None:
            return self._predict_tiled(image, threshold)
        return self.postprocess(self.pool.infer(self.preprocess(image)), *image.shape[:2], threshold)

    def _predict_tiled(self, image: np.ndarray, threshold: float | None) -> Prediction:
        """The whole image and its tiles through every infer request at once, merged (``runtime.tiling``)."""
        height, width = image.shape[:2]
        pieces: list[Piece] = []

        def on_outputs(window: Window, outputs: dict[str, np.ndarray]) -> None:
            found = self.postprocess(outputs, window[3] - window[1], window[2] - window[0], threshold)
            pieces.extend(pieces_of(found.masks, found.scores, found.labels, window))

        windows = tile_windows(width, height, self.metadata.tiling)
        self.pool.pipelined(((w, self.preprocess(image[w[1]:w[3], w[0]:w[2]])) for w in windows), on_outputs)
        return Prediction(*merge(pieces, self.metadata.tiling, height, width))

    def predict_async(self, images: Iterable[tuple[Any, np.ndarray]], on_result: Callable[[Any, Prediction], None],
                      threshold: float | None = None) -> None:
        """``on_result(key, prediction)`` for many ``(key, image)`` pairs, in input order, through all requests
        (a tiled model pipelines the tiles of one image at a time instead)."""
        if self.metadata.tiling is not None:
            for key, image in images:
                on_result(key, self.predict(image, threshold))
            return
        inputs = (((key, image.shape[:2]), self.preprocess(image)) for key, image in images)

        def on_outputs(key_and_shape: tuple[Any, tuple[int, int]], outputs: dict[str, np.ndarray]) -> None:
            key, (height, width) = key_and_shape
            on_result(key, self.postprocess(outputs, height, width, threshold))

        self.pool.pipelined(inputs, on_outputs)


def _boxes_of(masks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Tight boxes around masks (for models that predict no boxes); empty masks keep ``fallback``."""
    boxes = fallback.copy()
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes
