"""Which model version serves a request, looked up off the event loop unless a fresh answer is cached."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from warden.api.audit import facts
from warden.registry import ResolvedModel
from warden.services import Services


async def resolve_model(request: Request, tenant_id: int, name: str, version: int | None = None) -> ResolvedModel:
    """The caller's model ``name`` (a version, or the alias rules' choice); ``ModelNotFound`` otherwise."""
    services: Services = request.app.state.services
    registry = services.registry
    resolved = registry.resolve_cached(tenant_id, name, version)
    if resolved is None:
        resolved = await run_in_threadpool(registry.resolve, tenant_id, name, version)
    noted = facts(request)
    noted.model, noted.model_version = resolved.name, resolved.version
    return resolved
