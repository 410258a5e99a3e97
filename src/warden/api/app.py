"""The FastAPI application factory: one app over the shared services and detection engine."""

from __future__ import annotations

from fastapi import FastAPI

from warden import __version__
from warden.api import admin, v1, v2
from warden.api.errors import install_error_handlers
from warden.api.middleware import RequestContextMiddleware
from warden.detection import ImageLimits
from warden.services import Services
from warden.serving import DetectionEngine


def create_app(services: Services, engine: DetectionEngine | None = None) -> FastAPI:
    """Build the HTTP app over ``services`` (the engine defaults to one configured from its settings)."""
    settings = services.settings
    app = FastAPI(
        title="Warden",
        version=__version__,
        description="Multi-tenant YOLO detection: a simple API (/v1) and the Open Inference Protocol (/v2).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.engine = engine or DetectionEngine(
        services.registry.blobs,
        ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
        device=settings.device,
        threads=settings.threads,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    return app
