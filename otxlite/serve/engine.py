"""Scoring one image on a compiled IR: decoding, inference and post-processing run in a thread pool; inference
uses a pool of OpenVINO infer requests shared by all requests.

Per image::

    (event loop)  wait for a pipeline slot
    (thread)      cv2.imdecode -> Predictor.preprocess -> take an idle infer request -> infer (GIL released)
                  -> copy the outputs -> give the request back
    (thread)      drop detections under the threshold -> Predictor.postprocess -> to_azureml

Invariants: the event loop never decodes, resizes, infers or pastes masks; at most ``slots`` images are in the
pipeline at once (a memory bound: two per infer request, so requests never starve); no Python code runs on
OpenVINO's own threads (tearing down an ``AsyncInferQueue`` with a Python callback can abort the process).
"""

from __future__ import annotations

import asyncio
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import cv2
import numpy as np

from otxlite.inference.predictor import Predictor, request_outputs
from otxlite.inference.schema import to_azureml
from otxlite.serve.errors import RequestError

T = TypeVar("T")


class ScoringEngine:
    """A compiled ``Predictor`` behind a pool of infer requests and one thread pool."""

    def __init__(self, predictor: Predictor, workers: int | None = None) -> None:
        self.predictor = predictor
        count = int(predictor.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.idle: queue.Queue = queue.Queue()
        for _ in range(count):
            self.idle.put(predictor.compiled.create_infer_request())
        self.count = count
        self.slots = asyncio.Semaphore(2 * count)
        self.executor = ThreadPoolExecutor(max_workers=max(workers or min(32, (os.cpu_count() or 1) + 4), 2 * count),
                                           thread_name_prefix="otxlite-serve")

    @property
    def infer_requests(self) -> int:
        return self.count

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the engine's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def score(self, data: bytes, filename: str, threshold: float, max_polygon_points: int | None,
                    what: str) -> dict[str, Any]:
        """The AzureML entry of one encoded image (its header already checked)."""
        async with self.slots:
            outputs, height, width = await self.run(self._decode_and_infer, data, what)
            return await self.run(self._entry, outputs, height, width, filename, threshold, max_polygon_points)

    def _decode_and_infer(self, data: bytes, what: str) -> tuple[dict[str, np.ndarray], int, int]:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RequestError(422, f"{what}: the image header is readable but the pixels cannot be decoded "
                                    "(truncated or unsupported file).")
        tensor = self.predictor.preprocess(image)
        request = self.idle.get()
        try:
            request.infer({0: tensor})
            outputs = request_outputs(request)
        finally:
            self.idle.put(request)
        return outputs, image.shape[0], image.shape[1]

    def _entry(self, outputs: dict[str, np.ndarray], height: int, width: int, filename: str, threshold: float,
               max_polygon_points: int | None) -> dict[str, Any]:
        # Threshold before post-processing: only kept detections get full-size masks (memory ~ kept x H x W).
        boxes = outputs["boxes"].reshape(-1, 5)
        keep = boxes[:, 4] >= threshold
        masks = outputs["masks"]
        kept = {"boxes": boxes[keep], "labels": outputs["labels"].reshape(-1)[keep],
                "masks": masks.reshape(-1, *masks.shape[-2:])[keep]}
        prediction = self.predictor.postprocess(kept, height, width)
        return to_azureml(filename, prediction, self.predictor.metadata.labels, width, height, max_polygon_points)

    def close(self) -> None:
        """Finish the images in flight, then stop the thread pool."""
        self.executor.shutdown(wait=True)
