"""The served model's life (compiled in the background, so ``/health`` answers 503 meanwhile) and ``/score``'s work.

A request is scored in two passes. First every item is turned into checked image bytes (base64 decoded or URL
fetched, header read): one bad item refuses the whole request with a 4xx naming it, before any inference. Then the
images go through the ``ScoringEngine`` concurrently; the answers keep the request's order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional

from otxlite.core.model_files import ir_digest
from otxlite.runtime.predictor import Predictor
from otxlite.runtime.thresholds import detection_thresholds
from otxlite.serve.scoring import ScoringEngine
from otxlite.serve.errors import RequestError
from otxlite.serve.inputs import check_image_header, decode_base64, fetch_image, is_url
from otxlite.serve.schemas import InputData
from otxlite.serve.settings import ServeSettings

logger = logging.getLogger("otxlite.serve")


class ModelService:
    """One IR being served: ``status`` is ``loading``, then ``ready`` (or ``failed``, with ``detail``)."""

    def __init__(self, model: Path, settings: ServeSettings,
                 on_failure: Optional[Callable[[BaseException], None]] = None) -> None:
        self.model = Path(model)
        self.settings = settings
        self.on_failure = on_failure
        self.status = "loading"
        self.detail: str | None = None
        self.engine: ScoringEngine | None = None
        self.model_sha256: str | None = None

    async def load(self) -> None:
        """Compile the IR off the event loop (the server then holds it: the files may be deleted or replaced
        under it); on failure record why and call ``on_failure``."""
        start = time.perf_counter()
        try:
            self.model_sha256 = await asyncio.to_thread(ir_digest, self.model)
            self.engine = await asyncio.to_thread(
                lambda: ScoringEngine(Predictor(self.model, "CPU", self.settings.performance_hint)))
        except Exception as err:  # the background task's boundary: report, never crash the server
            self.status, self.detail = "failed", str(err)
            logger.error("Loading %s failed: %s", self.model, err)
            if self.on_failure is not None:
                self.on_failure(err)
            return
        self.status = "ready"
        logger.info("Model %s compiled in %.1f s (%s, %d infer requests); ready.", self.model,
                    time.perf_counter() - start, self.engine.predictor.metadata.precision, self.engine.infer_requests)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def ready_engine(self) -> ScoringEngine:
        """The engine, or a 503 while the model is loading (or failed to load)."""
        if self.engine is None:
            raise RequestError(503, f"the model is not ready ({self.status}); retry when GET /health answers 200.",
                               {"Retry-After": "1"})
        return self.engine

    async def score(self, input_data: InputData, confidence_threshold: float | None,
                    max_polygon_points: int | None, explain: bool = False) -> bytes:
        """The JSON answer of ``/score``: one AzureML entry per image, in the request's order (with ``explain``,
        each with its saliency maps)."""
        engine = self.ready_engine()
        items, index = input_data.data, input_data.index
        if len(items) > self.settings.max_images:
            raise RequestError(413, f"the request has {len(items)} images; this server takes at most "
                                    f"{self.settings.max_images} per request (--max-images).")
        if index is not None and len(index) != len(items):
            raise RequestError(422, f"input_data.index has {len(index)} entries but input_data.data has "
                                    f"{len(items)} images; give one index entry per image (or none).")
        names = [str(key) for key in index] if index is not None else [str(i) for i in range(len(items))]
        thresholds = detection_thresholds(engine.predictor.metadata.confidence_threshold, confidence_threshold, explain)
        encoded = await _all(self._image_bytes(engine, item, f"input_data.data[{i}]") for i, item in enumerate(items))
        entries = await _all(engine.score(data, name, thresholds, max_polygon_points, f"input_data.data[{i}]", explain)
                             for i, (data, name) in enumerate(zip(encoded, names)))
        return await engine.run(lambda: json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode())

    async def _image_bytes(self, engine: ScoringEngine, item: str, what: str) -> bytes:
        if is_url(item):
            data = await fetch_image(item, self.settings, what)
        else:
            data = await engine.run(decode_base64, item, self.settings, what)
        await engine.run(check_image_header, data, self.settings, what)
        return data


async def _all(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """Results in order; on the first error the other tasks are cancelled (no work for a refused request)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
