"""The admin API (``/admin``): tenants, keys and models, for ``admin``-scope keys.

An operator key (bound to no tenant) manages every tenant; a tenant's admin key
manages only its own keys and models, and another tenant's name answers the same
404 as a name that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from warden.api.audit import RequestFacts, facts
from warden.api.auth import Admin, admin_caller
from warden.api.body import read_body
from warden.api.json_body import json_body, json_request_body
from warden.api.schemas import (
    AdminModelOut,
    AliasIn,
    AliasOut,
    BatchingIn,
    IssuedKeyOut,
    KeyIn,
    KeyOut,
    PushOut,
    QuotaModel,
    RunCapIn,
    TenantIn,
    TenantOut,
    VersionOut,
    error_responses,
)
from warden.errors import Forbidden, InvalidArgument, TenantNotFound
from warden.registry import BatchSettings, ModelView
from warden.registry.service import MAX_BATCH_SIZE, MAX_QUEUE_DELAY_MS, MAX_VERSION
from warden.services import Services
from warden.tenancy import KeyView, Principal, Scope, TenantView

router = APIRouter(prefix="/admin", tags=["admin"])
TenantBody = Annotated[TenantIn, Depends(json_body(TenantIn, admin_caller))]
QuotaBody = Annotated[QuotaModel, Depends(json_body(QuotaModel, admin_caller))]
KeyBody = Annotated[KeyIn, Depends(json_body(KeyIn, admin_caller))]
AliasBody = Annotated[AliasIn, Depends(json_body(AliasIn, admin_caller))]
BatchingBody = Annotated[BatchingIn, Depends(json_body(BatchingIn, admin_caller))]
RunCapBody = Annotated[RunCapIn, Depends(json_body(RunCapIn, admin_caller))]
_ONNX_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The ONNX model file.",
    }
}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _act(request: Request, action: str, target: str, **details: str | int | float | None) -> RequestFacts:
    """Name the administrative action for the request's audit record (its outcome is the answer's status)."""
    noted = facts(request)
    noted.action, noted.target = action, target
    noted.details.update(details)
    return noted


def _operator(caller: Principal) -> None:
    if not caller.is_operator:
        raise Forbidden("only an operator key (bound to no tenant) may do this")


async def _tenant_id(request: Request, caller: Principal, name: str) -> int:
    if not caller.is_operator and caller.tenant_name != name:
        raise TenantNotFound(f"no tenant named {name!r}")
    return await run_in_threadpool(_services(request).tenants.tenant_id, name)


def _tenant_out(view: TenantView) -> TenantOut:
    return TenantOut(
        name=view.name,
        status=view.status,
        created_at=view.created_at.isoformat(),
        quota=QuotaModel.model_validate(view.quota.to_dict()),
    )


def _key_out(view: KeyView) -> KeyOut:
    return KeyOut(
        key_id=view.key_id,
        tenant=view.tenant,
        scope=view.scope.value,
        created_at=view.created_at.isoformat(),
        revoked_at=view.revoked_at.isoformat() if view.revoked_at else None,
    )


def _model_out(view: ModelView) -> AdminModelOut:
    return AdminModelOut(
        name=view.name,
        versions=[
            VersionOut(
                version=v.version,
                sha256=v.sha256,
                size_bytes=v.size_bytes,
                created_at=v.created_at.isoformat(),
                max_batch_size=v.batching.max_batch_size,
                max_queue_delay_ms=v.batching.max_queue_delay_ms,
                measured_run_ms=v.measured_run_ms,
                run_cap_ms=v.run_cap_ms,
                effective_run_cap_ms=v.effective_run_cap_ms,
                run_cap_source=v.run_cap_source,
            )
            for v in view.versions
        ],
        aliases={k: AliasOut(version=a.version, weight=a.weight) for k, a in view.aliases.items()},
    )


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantOut,
    summary="Create a tenant",
    responses=error_responses(400, 401, 403, 409, 413),
    openapi_extra=json_request_body(TenantIn),
)
async def create_tenant(body: TenantBody, request: Request, caller: Admin) -> TenantOut:
    """Operators only."""
    _act(request, "tenant.create", body.name)
    _operator(caller)
    return _tenant_out(await run_in_threadpool(_services(request).tenants.create_tenant, body.name))


@router.get("/tenants", response_model=list[TenantOut], summary="List tenants", responses=error_responses(401, 403))
async def list_tenants(request: Request, caller: Admin) -> list[TenantOut]:
    """Every tenant for operators; a tenant admin sees only its own."""
    views = await run_in_threadpool(_services(request).tenants.list_tenants)
    return [_tenant_out(v) for v in views if caller.is_operator or v.name == caller.tenant_name]


@router.get(
    "/tenants/{name}", response_model=TenantOut, summary="Show a tenant", responses=error_responses(401, 403, 404)
)
async def get_tenant(name: str, request: Request, caller: Admin) -> TenantOut:
    """One tenant."""
    await _tenant_id(request, caller, name)
    return _tenant_out(await run_in_threadpool(_services(request).tenants.get_tenant, name))


@router.patch(
    "/tenants/{name}",
    response_model=TenantOut,
    summary="Change a tenant's quota",
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra=json_request_body(QuotaModel),
)
async def update_tenant(name: str, body: QuotaBody, request: Request, caller: Admin) -> TenantOut:
    """Operators only: the fields given change (``null`` clears a limit), the others are kept."""
    changes = body.model_dump(exclude_unset=True)
    _act(request, "tenant.update", name, **changes)
    _operator(caller)
    if any(changes.get(field, "") is None for field in ("weight", "isolation")):
        raise InvalidArgument("weight and isolation take a value, not null")
    view = await run_in_threadpool(_services(request).tenants.update_quota, name, changes)
    return _tenant_out(view)


@router.post(
    "/tenants/{name}/suspend",
    response_model=TenantOut,
    summary="Suspend a tenant",
    responses=error_responses(401, 403, 404),
)
async def suspend_tenant(name: str, request: Request, caller: Admin) -> TenantOut:
    """Operators only; the tenant's keys are refused from the next request on."""
    _act(request, "tenant.suspend", name)
    _operator(caller)
    return _tenant_out(await run_in_threadpool(_services(request).tenants.set_status, name, "suspended"))


@router.post(
    "/tenants/{name}/resume",
    response_model=TenantOut,
    summary="Resume a tenant",
    responses=error_responses(401, 403, 404),
)
async def resume_tenant(name: str, request: Request, caller: Admin) -> TenantOut:
    """Operators only."""
    _act(request, "tenant.resume", name)
    _operator(caller)
    return _tenant_out(await run_in_threadpool(_services(request).tenants.set_status, name, "active"))


@router.delete(
    "/tenants/{name}",
    status_code=204,
    summary="Delete a tenant with its keys and models",
    responses=error_responses(401, 403, 404),
)
async def delete_tenant(name: str, request: Request, caller: Admin) -> Response:
    """Operators only."""
    _act(request, "tenant.delete", name)
    _operator(caller)
    services = _services(request)
    await run_in_threadpool(services.delete_tenant, name)
    return Response(status_code=204)


@router.post(
    "/tenants/{name}/keys",
    status_code=201,
    response_model=IssuedKeyOut,
    summary="Issue a key",
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra=json_request_body(KeyIn),
)
async def create_key(name: str, body: KeyBody, request: Request, caller: Admin) -> IssuedKeyOut:
    """The key is in this answer only. Only an operator may issue an ``approve`` key: a tenant's admin must not mint
    the key that decides its own tenant's approval requests."""
    noted = _act(request, "key.create", name, scope=body.scope)
    if body.scope == Scope.APPROVE.value:
        _operator(caller)
    await _tenant_id(request, caller, name)
    issued = await run_in_threadpool(_services(request).tenants.create_key, name, Scope(body.scope))
    noted.details["key_id"] = issued.key_id
    return IssuedKeyOut(key=issued.key, key_id=issued.key_id)


@router.get(
    "/tenants/{name}/keys",
    response_model=list[KeyOut],
    summary="List a tenant's keys",
    responses=error_responses(401, 403, 404),
)
async def list_keys(name: str, request: Request, caller: Admin) -> list[KeyOut]:
    """Key ids, scopes and dates; never secrets."""
    await _tenant_id(request, caller, name)
    return [_key_out(v) for v in await run_in_threadpool(_services(request).tenants.list_keys, name)]


@router.delete(
    "/keys/{key_id}", response_model=KeyOut, summary="Revoke a key", responses=error_responses(401, 403, 404)
)
async def revoke_key(key_id: str, request: Request, caller: Admin) -> KeyOut:
    """Refused from the next request on; a tenant admin may revoke only its tenant's keys."""
    _act(request, "key.revoke", key_id)
    scope = None if caller.is_operator else caller.tenant()
    view = await run_in_threadpool(lambda: _services(request).tenants.revoke_key(key_id, tenant_id=scope))
    return _key_out(view)


@router.post(
    "/tenants/{name}/models/{model}",
    status_code=201,
    response_model=PushOut,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
    openapi_extra=_ONNX_BODY,
    summary="Upload a model version",
)
async def push_model(
    name: str,
    model: str,
    request: Request,
    caller: Admin,
    alias: Annotated[str | None, Query(pattern="^(stable|canary)$")] = None,
    canary_weight: Annotated[int | None, Query(ge=0, le=100)] = None,
    max_batch_size: Annotated[int | None, Query(ge=1, le=MAX_BATCH_SIZE)] = None,
    max_queue_delay_ms: Annotated[float | None, Query(ge=0, le=MAX_QUEUE_DELAY_MS)] = None,
) -> PushOut:
    """Validate and store the ONNX file in the body as the next version of ``model``."""
    noted = _act(request, "model.push", f"{name}/{model}", alias=alias, canary_weight=canary_weight)
    tenant_id = await _tenant_id(request, caller, name)
    services = _services(request)
    data = await read_body(request, services.settings.max_model_bytes)
    batching = BatchSettings(max_batch_size, max_queue_delay_ms)
    pushed = await run_in_threadpool(
        lambda: services.registry.push(
            tenant_id, model, data, alias=alias, canary_weight=canary_weight, batching=batching
        )
    )
    noted.details.update(version=pushed.version, sha256=pushed.sha256, bytes=len(data))
    return PushOut(name=pushed.name, version=pushed.version, sha256=pushed.sha256)


@router.get(
    "/tenants/{name}/models",
    response_model=list[AdminModelOut],
    summary="List a tenant's models",
    responses=error_responses(401, 403, 404),
)
async def list_models(name: str, request: Request, caller: Admin) -> list[AdminModelOut]:
    """Models with versions and aliases."""
    tenant_id = await _tenant_id(request, caller, name)
    return [_model_out(v) for v in await run_in_threadpool(_services(request).registry.list_models, tenant_id)]


@router.put(
    "/tenants/{name}/models/{model}/aliases/{alias}",
    response_model=AdminModelOut,
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra=json_request_body(AliasIn),
    summary="Point an alias at a version",
)
async def set_alias(
    name: str, model: str, alias: str, body: AliasBody, request: Request, caller: Admin
) -> AdminModelOut:
    """``stable`` or ``canary`` (with its weight in percent)."""
    _act(request, "alias.set", f"{name}/{model}", alias=alias, version=body.version, weight=body.weight)
    tenant_id = await _tenant_id(request, caller, name)
    registry = _services(request).registry
    await run_in_threadpool(lambda: registry.set_alias(tenant_id, model, alias, body.version, body.weight))
    return _model_out(await run_in_threadpool(registry.get_model, tenant_id, model))


@router.put(
    "/tenants/{name}/models/{model}/versions/{version}/batching",
    response_model=AdminModelOut,
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra=json_request_body(BatchingIn),
    summary="Set a version's dynamic batching",
)
async def set_batching(
    name: str,
    model: str,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    body: BatchingBody,
    request: Request,
    caller: Admin,
) -> AdminModelOut:
    """``max_batch_size`` and ``max_queue_delay_ms``; nulls go back to the server's choice."""
    _act(
        request,
        "model.batching",
        f"{name}/{model}",
        version=version,
        max_batch_size=body.max_batch_size,
        max_queue_delay_ms=body.max_queue_delay_ms,
    )
    tenant_id = await _tenant_id(request, caller, name)
    registry = _services(request).registry
    batching = BatchSettings(body.max_batch_size, body.max_queue_delay_ms)
    await run_in_threadpool(lambda: registry.set_batching(tenant_id, model, version, batching))
    return _model_out(await run_in_threadpool(registry.get_model, tenant_id, model))


@router.put(
    "/tenants/{name}/models/{model}/versions/{version}/run-cap",
    response_model=AdminModelOut,
    responses=error_responses(400, 401, 403, 404, 413),
    openapi_extra=json_request_body(RunCapIn),
    summary="Set a version's run-time cap",
)
async def set_run_cap(
    name: str,
    model: str,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    body: RunCapBody,
    request: Request,
    caller: Admin,
) -> AdminModelOut:
    """Operators only: ``run_cap_ms`` stops a run of this version after that many ms per image (at most
    WARDEN_MAX_RUN_MS); null goes back to the cap derived from the runs measured at upload.

    A tenant's own key may not set it: the cap is what keeps the tenant's model from holding the workers.
    """
    _act(request, "model.run_cap", f"{name}/{model}", version=version, run_cap_ms=body.run_cap_ms)
    _operator(caller)
    tenant_id = await _tenant_id(request, caller, name)
    registry = _services(request).registry
    await run_in_threadpool(lambda: registry.set_run_cap(tenant_id, model, version, body.run_cap_ms))
    return _model_out(await run_in_threadpool(registry.get_model, tenant_id, model))


@router.delete(
    "/tenants/{name}/models/{model}",
    status_code=204,
    summary="Remove a model or one version",
    responses=error_responses(400, 401, 403, 404),
)
async def remove_model(
    name: str,
    model: str,
    request: Request,
    caller: Admin,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> Response:
    """Unreferenced blobs are removed too."""
    _act(request, "model.remove", f"{name}/{model}", version=version)
    tenant_id = await _tenant_id(request, caller, name)
    await run_in_threadpool(_services(request).registry.remove, tenant_id, model, version)
    return Response(status_code=204)


class BlobSharingOut(BaseModel):
    """Whether the sessions of some model bytes serve every tenant that pushed them, and who marked them so."""

    sha256: str
    shared: bool
    marked_by: str | None = Field(default=None, description="The operator key id (or cli:<user>) that marked it.")
    marked_at: str | None = None


@router.put(
    "/blobs/{sha256}/shared",
    response_model=BlobSharingOut,
    summary="Mark model bytes shareable across tenants",
    responses=error_responses(400, 401, 403, 404),
)
async def share_blob(sha256: str, request: Request, caller: Admin) -> BlobSharingOut:
    """Operators only: one session of these bytes then serves every tenant that pushed them (a public model).

    Anyone else is refused before the digest is looked at, so no tenant learns whether some bytes exist.
    """
    _act(request, "blob.share", sha256)
    _operator(caller)
    view = await run_in_threadpool(_services(request).registry.share, sha256, caller.key_id)
    return BlobSharingOut(
        sha256=view.sha256, shared=True, marked_by=view.marked_by, marked_at=view.marked_at.isoformat()
    )


@router.delete(
    "/blobs/{sha256}/shared",
    response_model=BlobSharingOut,
    summary="Stop sharing model bytes across tenants",
    responses=error_responses(400, 401, 403, 404),
)
async def unshare_blob(sha256: str, request: Request, caller: Admin) -> BlobSharingOut:
    """Operators only; each tenant loads its own session of these bytes from its next request on."""
    noted = _act(request, "blob.unshare", sha256)
    _operator(caller)
    noted.details["removed"] = await run_in_threadpool(_services(request).registry.unshare, sha256)
    return BlobSharingOut(sha256=sha256, shared=False)
