"""Scoring one image on a compiled IR: decoding, inference and post-processing run in a thread pool; inference
borrows from the predictor's pool of OpenVINO infer requests, shared by all HTTP requests.

Per image::

    (event loop)  wait for a pipeline slot
    (thread)      decode_image -> Predictor.predict: preprocess, infer through the pool (GIL released; a tiled
                  model sends the whole image and its tiles at once), decode (drops detections under the
                  threshold, then pastes) -> to_azureml (with ``explain``: every detection is pasted, saliency
                  maps are drawn, then the threshold applies)

Invariants: the event loop never decodes, resizes, infers or pastes masks; at most ``slots`` images are in the
pipeline at once (a memory bound: two per infer request, so requests never starve); no Python code runs on
OpenVINO's own threads.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar


from otxlite.core.images import decode_image
from otxlite.runtime.predictor import Predictor
from otxlite.runtime.saliency import class_saliency, saliency_pngs
from otxlite.runtime.schema import to_azureml
from otxlite.runtime.thresholds import Thresholds
from otxlite.serve.errors import RequestError

T = TypeVar("T")


class ScoringEngine:
    """A compiled ``Predictor`` behind a pool of infer requests and one thread pool."""

    def __init__(self, predictor: Predictor, workers: int | None = None) -> None:
        self.predictor = predictor
        count = predictor.pool.size  # twice the device's optimal number of requests
        self.slots = asyncio.Semaphore(count)
        self.executor = ThreadPoolExecutor(max_workers=max(workers or min(32, (os.cpu_count() or 1) + 4), count),
                                           thread_name_prefix="otxlite-serve")

    @property
    def infer_requests(self) -> int:
        return self.predictor.pool.size

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the engine's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def score(self, data: bytes, filename: str, thresholds: Thresholds, max_polygon_points: int | None,
                    what: str, explain: bool = False) -> dict[str, Any]:
        """The AzureML entry of one encoded image (its header already checked); with ``explain``, plus
        ``saliency_maps``."""
        async with self.slots:
            return await self.run(self._entry, data, what, filename, thresholds, max_polygon_points, explain)

    def _entry(self, data: bytes, what: str, filename: str, thresholds: Thresholds, max_polygon_points: int | None,
               explain: bool) -> dict[str, Any]:
        image = decode_image(data)
        if image is None:
            raise RequestError(422, f"{what}: the image header is readable but the pixels cannot be decoded "
                                    "(truncated or unsupported file).")
        height, width = image.shape[:2]
        labels = self.predictor.metadata.labels
        found = self.predictor.predict(image, thresholds.decode)
        entry = to_azureml(filename, found.at_least(thresholds.keep), labels, width, height, max_polygon_points)
        if not explain:
            return entry
        maps = class_saliency(found.masks, found.scores, found.labels, len(labels), (height, width))
        return {**entry, "saliency_maps": saliency_pngs(maps, labels)}

    def close(self) -> None:
        """Finish the images in flight, then stop the thread pool."""
        self.executor.shutdown(wait=True)
