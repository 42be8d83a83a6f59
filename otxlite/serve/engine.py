"""Scoring one image on a compiled IR: pixels are decoded and post-processed in a thread pool, inference runs in
OpenVINO's ``AsyncInferQueue``, shared by all requests.

Per image::

    (event loop)  wait for a pipeline slot
    (thread)      cv2.imdecode -> Predictor.preprocess -> AsyncInferQueue.start_async
    (OpenVINO)    inference; its callback copies the outputs and resolves an asyncio future (call_soon_threadsafe)
    (thread)      drop detections under the threshold -> Predictor.postprocess -> to_azureml

Invariants: the event loop never decodes, resizes or pastes masks; at most ``slots`` images are decoded at once (a
memory bound: two per infer request, so the queue never starves); ``start_async`` runs under a lock, because
``AsyncInferQueue`` hands out idle requests safely to one starting thread at a time only.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import cv2
import numpy as np

from otxlite.inference.predictor import Predictor, request_outputs
from otxlite.inference.schema import to_azureml
from otxlite.serve.errors import RequestError

T = TypeVar("T")


class ScoringEngine:
    """A compiled ``Predictor`` behind one ``AsyncInferQueue`` and one thread pool."""

    def __init__(self, predictor: Predictor, workers: int | None = None) -> None:
        import openvino as ov

        self.predictor = predictor
        self.queue = ov.AsyncInferQueue(predictor.compiled, 0)  # 0: OpenVINO's optimal number of requests
        self.queue.set_callback(_deliver_outputs)
        self.slots = asyncio.Semaphore(2 * len(self.queue))
        self.executor = ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4),
                                           thread_name_prefix="otxlite-serve")
        self._start_lock = threading.Lock()

    @property
    def infer_requests(self) -> int:
        return len(self.queue)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the engine's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def score(self, data: bytes, filename: str, threshold: float, max_polygon_points: int | None,
                    what: str) -> dict[str, Any]:
        """The AzureML entry of one encoded image (its header already checked)."""
        loop = asyncio.get_running_loop()
        async with self.slots:
            future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
            height, width = await self.run(self._decode_and_start, data, loop, future, what)
            outputs = await future
            return await self.run(self._entry, outputs, height, width, filename, threshold, max_polygon_points)

    def _decode_and_start(self, data: bytes, loop: asyncio.AbstractEventLoop, future: asyncio.Future,
                          what: str) -> tuple[int, int]:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RequestError(422, f"{what}: the image header is readable but the pixels cannot be decoded "
                                    "(truncated or unsupported file).")
        tensor = self.predictor.preprocess(image)
        with self._start_lock:
            self.queue.start_async({0: tensor}, (loop, future))
        return image.shape[0], image.shape[1]

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
        """Wait for inferences in flight, then stop the thread pool."""
        self.queue.wait_all()
        self.executor.shutdown(wait=True)


def _deliver_outputs(request: Any, userdata: tuple[asyncio.AbstractEventLoop, asyncio.Future]) -> None:
    """AsyncInferQueue callback (an OpenVINO thread): copy the outputs, hand them to the waiting coroutine."""
    loop, future = userdata
    try:
        outputs = request_outputs(request)
    except Exception as err:  # delivered to the request that waits for it
        loop.call_soon_threadsafe(_settle, future, None, err)
        return
    loop.call_soon_threadsafe(_settle, future, outputs, None)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled meanwhile (another image of it failed)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
