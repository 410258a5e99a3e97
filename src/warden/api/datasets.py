"""Tenants' datasets over HTTP (``/v1/datasets``): push, list, show, erase, by a tenant's ``admin`` or ``train`` key.

Every route drives :class:`~warden.datasets.DatasetService`; the tenant comes only from the
credential, so another tenant's dataset answers exactly like a missing one (404
``dataset_not_found``). A push is authenticated before its body is read, the body is capped by
``WARDEN_MAX_DATASET_BYTES`` (:mod:`warden.api.guard`), and the de-identification runs off the
event loop. Pushes and erasures are audited (``dataset.push``, ``dataset.delete``) with versions,
hashes and rows, never a value.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from warden.api.audit import RequestFacts, facts
from warden.api.auth import principal
from warden.api.body import read_body
from warden.api.schemas import error_responses
from warden.datasets import DatasetService, DatasetVersionView, DatasetView
from warden.datasets.service import check_format, check_name
from warden.errors import Forbidden, UnsupportedDatasetFormat
from warden.registry.service import MAX_VERSION
from warden.services import Services
from warden.tenancy import Principal, Scope

DATASET_SCOPES: Final = frozenset({Scope.ADMIN, Scope.TRAIN})
"""The scopes of a tenant's key that may push, read and erase its datasets."""
MEDIA_TYPES: Final = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "text/plain": "text",
}
"""The format a push's ``Content-Type`` names when its query gives none."""
_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in (*MEDIA_TYPES, "application/octet-stream")
        },
        "description": "The dataset file (its format from ?format=, else from the Content-Type).",
    }
}


async def dataset_caller(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """A caller allowed to use datasets: a tenant's ``admin`` or ``train`` key (operators' keys have no tenant)."""
    if caller.tenant_id is None or caller.scope not in DATASET_SCOPES:
        raise Forbidden("this route needs a tenant's key with the 'admin' or 'train' scope")
    return caller


Trainer = Annotated[Principal, Depends(dataset_caller)]
router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
NamePath = Annotated[str, Path(description="The dataset's name (lowercase letters, digits, '-' and '_').")]
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION)]


class DatasetVersionOut(BaseModel):
    """One version: hashes of the stored (de-identified) content and of the upload, rows, size and the scan report."""

    name: str
    version: int
    format: str
    policy: str
    sha256: str = Field(description="sha256 of the stored, de-identified content.")
    size_bytes: int
    source_sha256: str = Field(description="sha256 of the upload as received (never stored).")
    source_bytes: int
    rows: int
    key_id: str = Field(description="The id of the tenant's pseudonymisation key (never the key).")
    report: dict[str, Any] = Field(description="Entities per column, what was done to each, and k; never a value.")
    created_at: str
    created_by: str
    erased: bool
    erased_at: str | None
    erased_by: str | None


class DatasetOut(BaseModel):
    """A dataset: every version pushed, oldest first (erased ones keep their hashes and the fact of erasure)."""

    name: str
    latest_version: int | None
    stored_bytes: int
    erased: bool
    versions: list[DatasetVersionOut]


def _datasets(request: Request) -> DatasetService:
    services: Services = request.app.state.services
    return services.datasets


def _act(request: Request, action: str, caller: Principal, name: str, **details: str | int | None) -> RequestFacts:
    """Name the action for the request's audit record (the actor is the record's key id)."""
    noted = facts(request)
    noted.action, noted.target = action, f"{caller.tenant_name}/{name}"
    noted.details.update(details)
    return noted


def _version_out(view: DatasetVersionView) -> DatasetVersionOut:
    return DatasetVersionOut.model_validate(view.to_dict())


def _dataset_out(view: DatasetView) -> DatasetOut:
    return DatasetOut.model_validate(view.to_dict())


def format_of(query: str | None, content_type: str | None) -> str:
    """The format a push names: ``?format=`` first, else its ``Content-Type``; ``unsupported_dataset_format`` else."""
    if query is not None:
        return query
    media = parse_options_header(content_type or "")[0].decode("latin-1").lower()
    fmt = MEDIA_TYPES.get(media)
    if fmt is None:
        raise UnsupportedDatasetFormat(
            f"say the dataset's format with ?format=csv|jsonl|parquet|text or a Content-Type of "
            f"{', '.join(MEDIA_TYPES)} (got {media or 'none'!r})"
        )
    return fmt


@router.post(
    "/{name}",
    status_code=201,
    response_model=DatasetVersionOut,
    summary="Push a dataset version (de-identified on ingestion)",
    responses=error_responses(400, 401, 403, 413, 415, 429, 503),
    openapi_extra=_BODY,
)
async def push_dataset(
    name: NamePath,
    request: Request,
    caller: Trainer,
    fmt: Annotated[str | None, Query(alias="format", description="csv, jsonl, parquet or text.")] = None,
    policy: Annotated[str, Query(description="The de-identification policy (auto).")] = "auto",
) -> DatasetVersionOut:
    """De-identify the body under the tenant's key and store only the result, as the dataset's next version."""
    noted = _act(request, "dataset.push", caller, name, policy=policy)
    service = _datasets(request)
    chosen = format_of(fmt, request.headers.get("content-type"))
    check_name(name)
    check_format(chosen)  # refused before a byte of the body is read
    noted.details["format"] = chosen
    data = await read_body(request, service.max_bytes)
    tenant_id = caller.tenant()
    pushed = await run_in_threadpool(lambda: service.push(tenant_id, name, data, chosen, policy, actor=caller.key_id))
    noted.details.update(
        version=pushed.version,
        sha256=pushed.sha256,
        source_sha256=pushed.source_sha256,
        rows=pushed.rows,
        bytes=len(data),
        key_id=pushed.key_id,
    )
    return _version_out(pushed)


@router.get(
    "", response_model=list[DatasetOut], summary="List the tenant's datasets", responses=error_responses(401, 403)
)
async def list_datasets(request: Request, caller: Trainer) -> list[DatasetOut]:
    """Every dataset of the caller's tenant, each with all its versions (erased ones too)."""
    tenant_id = caller.tenant()
    return [_dataset_out(view) for view in await run_in_threadpool(_datasets(request).list, tenant_id)]


@router.get(
    "/{name}", response_model=DatasetOut, summary="Show a dataset", responses=error_responses(400, 401, 403, 404)
)
async def show_dataset(name: NamePath, request: Request, caller: Trainer) -> DatasetOut:
    """One dataset with its versions; another tenant's answers exactly like a missing one."""
    tenant_id = caller.tenant()
    return _dataset_out(await run_in_threadpool(_datasets(request).get, tenant_id, name))


@router.delete(
    "/{name}",
    response_model=DatasetOut,
    summary="Erase every version of a dataset",
    responses=error_responses(400, 401, 403, 404),
)
async def delete_dataset(name: NamePath, request: Request, caller: Trainer) -> DatasetOut:
    """Crypto-shred every version; the answer lists them with their hashes and when they were erased."""
    noted = _act(request, "dataset.delete", caller, name)
    service, tenant_id = _datasets(request), caller.tenant()
    erased = await run_in_threadpool(lambda: service.delete(tenant_id, name, actor=caller.key_id))
    noted.details.update(
        versions=",".join(str(v.version) for v in erased),
        sha256=",".join(v.sha256 for v in erased),
        source_sha256=",".join(v.source_sha256 for v in erased),
        rows=sum(v.rows for v in erased),
    )
    return _dataset_out(await run_in_threadpool(service.get, tenant_id, name))


@router.delete(
    "/{name}/versions/{version}",
    response_model=DatasetVersionOut,
    summary="Erase one version of a dataset",
    responses=error_responses(400, 401, 403, 404),
)
async def delete_dataset_version(
    name: NamePath, version: VersionPath, request: Request, caller: Trainer
) -> DatasetVersionOut:
    """Crypto-shred one version; its row keeps the hashes and the fact of erasure."""
    noted = _act(request, "dataset.delete", caller, name, version=version)
    service, tenant_id = _datasets(request), caller.tenant()
    (erased,) = await run_in_threadpool(lambda: service.delete(tenant_id, name, version, actor=caller.key_id))
    noted.details.update(sha256=erased.sha256, source_sha256=erased.source_sha256, rows=erased.rows)
    return _version_out(erased)
