"""The FastAPI application: routes, error answers and the request guard; the work is in ``ModelService``."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Optional

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from otxlite import __version__
from otxlite.serve.errors import RequestError
from otxlite.serve.guard import RequestGuard
from otxlite.serve.schemas import ErrorResponse, Health, ImagePrediction, InputSize, Limits, Metadata, ScoreRequest
from otxlite.serve.service import ModelService
from otxlite.serve.settings import MIN_IMAGE_SIDE, ServeSettings

PROTECTED_PATHS = frozenset({"/score", "/metadata"})  # /health stays open for probes; /docs shows no data

DESCRIPTION = """Instance segmentation with an OpenVINO IR exported by otxlite, in the AzureML AutoML online-endpoint
contract. `POST /score` answers one entry per image, in order, in the schema of `predictions.json`.

Errors are JSON `{"error": "..."}` (plus `detail` for validation errors): 400 the body is not JSON, 401 missing or
wrong API key (when the server has one), 403 a URL the server does not fetch, 413 too large (body, image bytes,
pixels or number of images), 422 invalid fields or an image that cannot be read (or is under
""" + f"{MIN_IMAGE_SIDE} px on a side), 503 the model is still loading."


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {400: "The body is not valid JSON.", 401: "Missing or wrong API key.",
               403: "An image URL the server does not fetch (URLs off, or not a public address).",
               413: "Over a size limit: body, image bytes, image pixels or number of images.",
               422: "Invalid fields, or an image that cannot be read or is too small.",
               503: "The model is not loaded yet."}
    return {status: {"model": ErrorResponse, "description": meaning[status]} for status in statuses}


def create_app(model: Path, settings: ServeSettings = ServeSettings(),
               on_load_failure: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    """The service for an IR; the model compiles in the background once the app starts (its lifespan)."""
    service = ModelService(model, settings, on_load_failure)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(service.load())
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish by now
            await loading
            await asyncio.to_thread(service.close)

    app = FastAPI(title="otxlite serve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  redoc_url=None)
    app.state.service = service
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, api_key=settings.api_key,
                       protected_paths=PROTECTED_PATHS)
    _add_error_handlers(app)
    # RequestGuard enforces the key before a body is read; this dependency puts the scheme into the OpenAPI document.
    auth = [Depends(HTTPBearer(auto_error=False, description="The server's --api-key."))] if settings.api_key else []
    auth_errors = (401,) if settings.api_key else ()

    @app.post("/score", response_model=list[ImagePrediction], dependencies=auth,
              responses=_errors(400, *auth_errors, 403, 413, 422, 503))
    async def score(
        body: ScoreRequest,
        confidence_threshold: Annotated[Optional[float], Query(
            ge=0.0, le=1.0, description="Keep detections scoring at least this (default: the model's own).")] = None,
        max_polygon_points: Annotated[Optional[int], Query(
            ge=3, description="Simplify each polygon to at most this many points (default: no simplification).")
        ] = None,
        explain: Annotated[bool, Query(
            description="Also answer `saliency_maps`: per class, a grayscale PNG at the image's size (the maximum of "
                        "score x mask over that class's detections, all scores counted; as `otxlite explain`).")
        ] = False,
    ) -> Response:
        """Segment the images of an AzureML-style request; one answer per image, in the request's order."""
        content = await service.score(body.input_data, confidence_threshold, max_polygon_points, explain)
        return Response(content, media_type="application/json")

    @app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Not ready."}})
    async def health() -> JSONResponse:
        """200 once the model is compiled; 503 while it loads (or if loading failed)."""
        status = 200 if service.status == "ready" else 503
        health = Health(status=service.status, detail=service.detail, model=str(service.model),
                        model_sha256=service.model_sha256)
        return JSONResponse(health.model_dump(), status_code=status)

    @app.get("/metadata", response_model=Metadata, dependencies=auth, responses=_errors(*auth_errors, 503))
    async def metadata() -> Metadata:
        """The model (labels, input size, threshold, precision, exporting otxlite version) and the server's limits."""
        meta = service.ready_engine().predictor.metadata
        return Metadata(
            model=service.model.name, labels=meta.labels,
            input_size=InputSize(width=meta.input_size[0], height=meta.input_size[1]),
            confidence_threshold=meta.confidence_threshold, precision=meta.precision,
            otxlite_version=meta.otxlite_version, template_id=meta.template_id,
            limits=Limits(max_images=settings.max_images, max_image_mb=settings.max_image_mb,
                          max_megapixels=settings.max_megapixels, min_image_side=MIN_IMAGE_SIDE,
                          max_body_bytes=settings.max_body_bytes, allow_urls=settings.allow_urls))

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answer is ``{"error": "<what was wrong>"}``, validation errors add ``detail``."""

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        broken = [p for p in problems if p["type"] == "json_invalid"]
        if broken:
            reason = (broken[0].get("ctx") or {}).get("error", "JSON decode error")
            return JSONResponse({"error": f"the request body is not valid JSON ({reason}, at character "
                                          f"{broken[0]['loc'][-1]})."}, status_code=400)
        detail = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail[:5])
        return JSONResponse({"error": f"invalid request: {summary}.", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, err: Exception) -> JSONResponse:  # logged with its traceback by uvicorn
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server log."}, status_code=500)
