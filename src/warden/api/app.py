"""The FastAPI application factory: one app over the shared services and detection engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response, params

from warden import __version__
from warden.api import admin, admin_audit, approvals, console, datasets, v1, v2
from warden.api.audit import AuditMiddleware
from warden.api.auth import principal
from warden.api.errors import install_error_handlers
from warden.api.guard import BodyGuard
from warden.api.middleware import RequestContextMiddleware, ShapedErrors
from warden.detection import ImageLimits
from warden.errors import Forbidden
from warden.observability import Metrics, ObservabilityMiddleware
from warden.services import Services
from warden.serving import DetectionEngine
from warden.serving.admission import Admission
from warden.serving.engine import EngineOptions
from warden.tenancy import Principal


def create_app(services: Services, engine: DetectionEngine | None = None) -> FastAPI:
    """Build the HTTP app over ``services`` (the engine defaults to one configured from its settings)."""
    settings = services.settings

    def build_engine() -> DetectionEngine:
        return DetectionEngine(
            services.registry.blobs,
            ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
            Admission.create(services.db, settings.redis_url, settings.redis_prefix),
            EngineOptions(
                workers=settings.workers,
                threads=settings.threads,
                device=settings.device,
                memory_budget=settings.model_memory_budget,
                headroom=settings.headroom,
                session_memory_limit=settings.session_memory_limit,
                max_run_ms=settings.max_run_ms,
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
    app.add_middleware(BodyGuard, settings=settings)  # inside audit: a refused body is recorded
    app.add_middleware(ShapedErrors)  # inside audit: a failure's 500 is recorded like any answer
    app.add_middleware(AuditMiddleware, audit=services.audit)
    # --- observability: metrics and the access line of every request, and GET /metrics ---
    metrics = Metrics(
        max_tenants=settings.metrics_max_tenants,
        max_models=settings.metrics_max_models,
        engine=lambda: app.state.engine,
        audit=services.audit,
    )
    app.state.metrics = metrics
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)  # outside audit: sees the answer as sent
    app.add_api_route(
        "/metrics", _scrape, methods=["GET"], include_in_schema=False, dependencies=_scraper(settings.metrics_public)
    )
    # --- end observability ---
    app.add_middleware(RequestContextMiddleware)  # outermost: the audit record carries its request id
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    app.include_router(admin_audit.router)
    app.include_router(approvals.router)
    app.include_router(datasets.router)
    app.include_router(console.router)
    return app


async def _scrape(request: Request) -> Response:
    """Prometheus metrics of this app (text format, or OpenMetrics when the scraper asks for it).

    Not in the OpenAPI schema, and never audited (see ``UNAUDITED`` in :mod:`warden.api.audit`):
    a scrape every few seconds would bury the trail, and monitoring must keep working while the
    audit store is down. With ``WARDEN_METRICS_PUBLIC=false`` (the default) it needs the
    operator's admin key as a Bearer token, since the series name tenants and models; set it
    true for a scraper inside the cluster that holds no key.
    """
    metrics: Metrics = request.app.state.metrics
    body, content_type = metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


async def _operator_only(caller: Annotated[Principal, Depends(principal)]) -> None:
    if not caller.is_operator:
        raise Forbidden("/metrics needs the operator's admin key (or WARDEN_METRICS_PUBLIC=true)")


def _scraper(public: bool) -> list[params.Depends]:
    return [] if public else [Depends(_operator_only)]
