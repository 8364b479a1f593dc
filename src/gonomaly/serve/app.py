"""The scoring service as an ASGI app (Starlette): ``create_app(settings)`` for one process,
``app_from_environment()`` for uvicorn's worker processes (``--workers N``), which find their
settings in the ``GONOMALY_SERVE_SETTINGS`` environment variable.

Endpoints: ``POST /v1/score``, ``GET /v1/model``, ``GET /healthz``, ``GET /metrics`` and the
web page at ``/``. The run folder is loaded and verified once, then only read.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

import gonomaly
from gonomaly.image_scoring import (
    DEFAULT_SERVE_MAX_PIXELS,
    FailedImage,
    combine,
    image_reader,
    overlay_png,
    overlay_scale,
    read_or_error,
    score_arrays,
    trained_on_resized_images,
)
from gonomaly.serve.batcher import DynamicBatcher
from gonomaly.serve.http import (
    RequestMetricsMiddleware,
    RequestRefused,
    TokenAuthMiddleware,
    error_response,
    read_body,
    request_images,
)
from gonomaly.serve.metrics import ServiceMetrics
from gonomaly.serve.page import PAGE_HTML

SETTINGS_VARIABLE = "GONOMALY_SERVE_SETTINGS"
ENDPOINTS = ("/", "/healthz", "/metrics", "/v1/model", "/v1/score")
TRUE_WORDS = ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What ``gonomaly serve`` was asked for (see ``gonomaly.serve.serve``)."""

    run_dir: str
    max_batch: int = 64
    max_wait_ms: float = 5.0
    token: str | None = None
    max_body_mb: float = 20.0
    max_pixels: int = DEFAULT_SERVE_MAX_PIXELS

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def to_environment(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_environment(cls) -> "ServeSettings":
        text = os.environ.get(SETTINGS_VARIABLE)
        if not text:
            raise RuntimeError(f"{SETTINGS_VARIABLE} is not set: start workers through gonomaly.serve.serve")
        return cls(**json.loads(text))


def model_description(detector, run_dir: Path) -> dict:
    """``GET /v1/model``: the model, data spec, threshold, image size and package version."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    metadata = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
    channels, height, width = detector.image_shape_
    return {
        "model": config.get("model"), "score": detector.score,
        "data": config.get("data", metadata.get("data")),
        "image": {"channels": channels, "height": height, "width": width,
                  "resized": trained_on_resized_images(run_dir)},
        "threshold": {"rule": str(detector.threshold_rule_), "value": float(detector.threshold_)},
        "training": detector.training_stats_, "run_dir": str(run_dir),
        "version": gonomaly.__version__,
    }


class ScoringService:
    """The endpoints over one loaded detector, its batcher and its metrics."""

    def __init__(self, detector, settings: ServeSettings):
        self.detector, self.settings = detector, settings
        self.metrics = ServiceMetrics()
        self.model = model_description(detector, Path(settings.run_dir))
        self.threshold = float(detector.threshold_)
        self.overlay_vmax = overlay_scale(detector)
        self.read = image_reader(settings.run_dir)  # resizes as training did (mvtec, folder data)
        self.batcher = DynamicBatcher(self.score_batch, max_batch=settings.max_batch,
                                      max_wait_ms=settings.max_wait_ms, on_batch=self.metrics.observe_batch)
        self.metrics.queued.set_function(lambda: self.batcher.queued_images)

    def score_batch(self, images: np.ndarray, map_rows: np.ndarray):
        """Runs in the batcher's thread."""
        return score_arrays(self.detector, images, map_rows if len(map_rows) else None)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        try:
            yield
        finally:
            await self.batcher.stop()  # uvicorn has finished the requests in flight

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE_HTML)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def describe(self, request: Request) -> Response:
        return JSONResponse({**self.model, "max_batch": self.settings.max_batch,
                             "max_body_mb": self.settings.max_body_mb, "max_pixels": self.settings.max_pixels})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=self.metrics.content_type)

    def decode(self, images: list[tuple[str, bytes]]) -> list[np.ndarray | FailedImage]:
        return [read_or_error(data, self.detector.image_shape_, name=name, max_pixels=self.settings.max_pixels,
                              read=self.read)
                for name, data in images]

    async def score(self, request: Request) -> Response:
        body = await read_body(request, self.settings.max_body_bytes)
        images = await request_images(request, body, self.settings.max_body_bytes)
        with_maps = request.query_params.get("map", "").lower() in TRUE_WORDS
        decoded = await run_in_threadpool(self.decode, images)
        readable = [item for item in decoded if isinstance(item, np.ndarray)]
        scores, maps = np.empty(0), None
        if readable:
            scores, maps = await self.batcher.submit(np.stack(readable), with_maps)
        results = combine([name for name, _ in images], decoded, scores, self.threshold, maps)
        payload = await run_in_threadpool(self.render, results)
        failed = [item for item in results if isinstance(item, FailedImage)]
        for item in failed:
            self.metrics.count_error(item.kind)
        if failed:
            payload["error"] = f"{len(failed)} of {len(results)} image(s) could not be scored; {failed[0].error}"
        return JSONResponse(payload, status_code=422 if failed else 200)

    def render(self, results) -> dict:
        rule = self.model["threshold"]["rule"]
        rendered = []
        for item in results:
            if isinstance(item, FailedImage):
                rendered.append({"name": item.name, "error": item.error, "kind": item.kind})
                continue
            entry = {"name": item.name, "score": item.score, "label": item.label, "decision": item.decision,
                     "threshold": self.threshold, "threshold_rule": rule}
            if item.anomaly_map is not None:
                png = overlay_png(item.image, item.anomaly_map, self.overlay_vmax)
                entry["map_png"] = base64.b64encode(png).decode("ascii")
            rendered.append(entry)
        return {"images": rendered, "threshold": {"rule": rule, "value": self.threshold}}


async def refused(request: Request, exc: RequestRefused) -> Response:
    request.state.error_kind = exc.kind
    return error_response(exc.status, str(exc))


async def http_error(request: Request, exc: HTTPException) -> Response:
    request.state.error_kind = f"http_{exc.status_code}"
    return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    return error_response(500, f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")


def create_app(settings: ServeSettings, detector=None) -> Starlette:
    """The ASGI app serving ``settings.run_dir`` (loaded and verified here unless ``detector``
    is given already loaded from it)."""
    if detector is None:
        from gonomaly.detector import ReconstructionDetector

        detector = ReconstructionDetector.load(settings.run_dir)
    service = ScoringService(detector, settings)
    routes = [Route("/", service.page), Route("/healthz", service.healthz), Route("/metrics", service.prometheus),
              Route("/v1/model", service.describe), Route("/v1/score", service.score, methods=["POST"])]
    middleware = [Middleware(RequestMetricsMiddleware, metrics=service.metrics, endpoints=ENDPOINTS)]
    if settings.token:
        middleware.append(Middleware(TokenAuthMiddleware, token=settings.token))
    app = Starlette(routes=routes, middleware=middleware, lifespan=service.lifespan,
                    exception_handlers={RequestRefused: refused, HTTPException: http_error, Exception: internal_error})
    app.state.service = service
    return app


def app_from_environment() -> Starlette:
    """uvicorn's factory for worker processes: ``gonomaly.serve.app:app_from_environment``."""
    return create_app(ServeSettings.from_environment())
