"""The FastAPI application factory: one app over the shared services and detection engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from warden import __version__
from warden.api import admin, v1, v2
from warden.api.audit import AuditMiddleware
from warden.api.errors import install_error_handlers
from warden.api.middleware import RequestContextMiddleware
from warden.detection import ImageLimits
from warden.services import Services
from warden.serving import DetectionEngine
from warden.serving.admission import Admission
from warden.serving.engine import EngineOptions


def create_app(services: Services, engine: DetectionEngine | None = None) -> FastAPI:
    """Build the HTTP app over ``services`` (the engine defaults to one configured from its settings)."""
    settings = services.settings

    def build_engine() -> DetectionEngine:
        return DetectionEngine(
            services.registry.blobs,
            ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
            Admission.create(services.db, settings.redis_url),
            EngineOptions(
                workers=settings.workers,
                threads=settings.threads,
                device=settings.device,
                memory_budget=settings.model_memory_budget,
                headroom=settings.headroom,
            ),
        )

    owned = engine is None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owned and app.state.engine.closed:  # the app is served again after a shutdown
            app.state.engine = build_engine()
        yield
        if owned:
            app.state.engine.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Warden",
        version=__version__,
        description="Multi-tenant YOLO detection: a simple API (/v1) and the Open Inference Protocol (/v2).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.engine = engine or build_engine()
    install_error_handlers(app)
    app.add_middleware(AuditMiddleware, audit=services.audit)
    app.add_middleware(RequestContextMiddleware)  # outermost: the audit record carries its request id
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    return app
