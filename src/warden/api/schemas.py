"""Request and response bodies of the simple API and the admin API, as documented in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from warden.jobs.approvals import ApprovalState
from warden.registry.service import MAX_BATCH_SIZE, MAX_QUEUE_DELAY_MS, MAX_VERSION
from warden.tenancy.service import NAME_PATTERN


class ErrorDetail(BaseModel):
    """A stable error code and a human message."""

    code: str = Field(description="Stable machine-readable code, e.g. model_not_found.")
    message: str


class ErrorBody(BaseModel):
    """The error answer of ``/v1`` and ``/admin``."""

    error: ErrorDetail


class DetectionOut(BaseModel):
    """One box in original-image pixels."""

    box: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2")
    score: float
    class_id: int
    class_name: str


class DetectResponse(BaseModel):
    """The detections of one image, by score, highest first."""

    model: str
    model_version: int
    width: int
    height: int
    detections: list[DetectionOut]


class AliasOut(BaseModel):
    """An alias of a model and the share of requests it gets (canary)."""

    version: int
    weight: int


class ModelOut(BaseModel):
    """One of the caller's models."""

    name: str
    versions: list[int]
    aliases: dict[str, AliasOut]


class ModelsResponse(BaseModel):
    """The caller's models."""

    models: list[ModelOut]


_ERROR_DESCRIPTIONS: Final = {
    400: "Invalid argument, image or model file",
    401: "Missing or invalid credential",
    403: "Credential not allowed here",
    404: "No such tenant, key, model or approval among the caller's",
    409: "Exists already, changed concurrently, or an approval not in the state the change needs",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Understood but not served: an ONNX model that is no detection model Warden serves (upload), "
    "or an answer larger than the server's limit (answer_too_large)",
    429: "Over the tenant's rate or daily quota (see Retry-After)",
    503: "The tenant's queue is full (see Retry-After)",
    504: "The request's deadline passed while it waited",
}


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place, for a body that has no components of its own."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` table of a ``/v1`` or ``/admin`` operation that answers these error statuses."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


class TenantIn(BaseModel):
    """A tenant to create."""

    name: str = Field(
        description="1-63 of a-z, 0-9, '-' and '_', starting and ending alphanumeric.",
        json_schema_extra={"pattern": NAME_PATTERN.pattern},
    )


class QuotaModel(BaseModel):
    """A tenant's quota; ``null`` is unlimited.

    In a change, a field left out is kept and ``null`` clears a limit; ``0`` clears one too, except
    ``daily_requests``, where it allows none. ``weight`` and ``isolation`` always take a value.
    """

    model_config = ConfigDict(extra="forbid")

    rps: float | None = Field(default=None, ge=0)
    burst: int | None = Field(default=None, ge=0)
    max_concurrency: int | None = Field(default=None, ge=0)
    max_queue: int | None = Field(default=None, ge=0)
    weight: float | None = Field(default=None, gt=0)
    max_image_bytes: int | None = Field(default=None, ge=0)
    max_image_pixels: int | None = Field(default=None, ge=0)
    daily_requests: int | None = Field(default=None, ge=0)
    isolation: str | None = Field(default=None, pattern="^(shared|dedicated)$")


class TenantOut(BaseModel):
    """A tenant."""

    name: str
    status: str
    created_at: str
    quota: QuotaModel | None = None


class KeyIn(BaseModel):
    """A key to issue."""

    scope: str = Field(
        default="detect",
        pattern="^(detect|admin|train|approve)$",
        description="detect: run detections; admin: manage the tenant; train: request approvals (a data "
        "scientist); approve: decide the tenant's approval requests (operators only may issue it).",
    )


class IssuedKeyOut(BaseModel):
    """A new key: shown once, never again."""

    key: str
    key_id: str


class KeyOut(BaseModel):
    """A key as listed (never its secret)."""

    key_id: str
    tenant: str | None
    scope: str
    created_at: str
    revoked_at: str | None


class PushOut(BaseModel):
    """What a model upload stored."""

    name: str
    version: int
    sha256: str


class VersionOut(BaseModel):
    """One stored version of a model."""

    version: int
    sha256: str
    size_bytes: int
    created_at: str
    max_batch_size: int | None = Field(default=None, description="Images per run; null: the server's choice.")
    max_queue_delay_ms: float | None = Field(
        default=None, description="How long a request may wait for its batch to fill; null: the server's choice."
    )
    measured_run_ms: float | None = Field(
        default=None,
        description="The slowest run measured at upload (black, white, noise, a photo), in ms; null: pushed "
        "before runs were measured.",
    )
    run_cap_ms: float | None = Field(
        default=None, description="The run-time cap an operator set, in ms; null: derived from measured_run_ms."
    )
    effective_run_cap_ms: float = Field(
        description="The cap serving applies, in ms per image: a run taking longer is stopped (deadline_exceeded)."
    )
    run_cap_source: Literal["set", "derived", "max"] = Field(
        description="set: an operator's run_cap_ms; derived: 8 x measured_run_ms, at least 1000 ms; max: "
        "WARDEN_MAX_RUN_MS (never measured). Every cap is at most WARDEN_MAX_RUN_MS."
    )


class RunCapIn(BaseModel):
    """A version's run-time cap in ms (above 0, at most WARDEN_MAX_RUN_MS); null goes back to the derived cap."""

    run_cap_ms: float | None = Field(gt=0, allow_inf_nan=False)


class BatchingIn(BaseModel):
    """A version's dynamic batching; a null field goes back to the server's choice (off on CPU, on for GPU)."""

    max_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    max_queue_delay_ms: float | None = Field(default=None, ge=0, le=MAX_QUEUE_DELAY_MS)


class AdminModelOut(BaseModel):
    """A model with its versions and aliases."""

    name: str
    versions: list[VersionOut]
    aliases: dict[str, AliasOut]


class AliasIn(BaseModel):
    """Point an alias at a version (``weight``: the canary's percent of requests)."""

    version: int = Field(ge=1, le=MAX_VERSION)
    weight: int | None = Field(default=None, ge=0, le=100)


_DATASET_REF: Final = f"^{NAME_PATTERN.pattern}:[1-9][0-9]{{0,9}}$"


class ApprovalIn(BaseModel):
    """An approval request: what the tenant asks to be allowed to process, for what, and within which limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    purpose: str = Field(min_length=1, max_length=500, description="What the data is processed for.")
    datasets: list[str] = Field(
        min_length=1,
        max_length=13,
        description="Datasets of the tenant's dataset service as name:version; admission resolves each to the "
        "content hash of that stored version.",
        json_schema_extra={"items": {"type": "string", "pattern": _DATASET_REF}},
    )
    max_runs: int = Field(ge=1, le=1_000_000, description="How many jobs may run under it.")
    expires: str = Field(
        min_length=1,
        max_length=64,
        description="When it lapses: an ISO 8601 time (no offset: UTC) or a duration from now (90d, 12h, 4w).",
    )
    runtimes: list[str] | None = Field(
        default=None,
        max_length=16,
        description="The runtimes a job may use; null: any.",
        json_schema_extra={"items": {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}},
    )
    max_gpus: int = Field(default=0, ge=0, le=64, description="The most GPUs one job may use.")
    allow_identifiers: bool = Field(
        default=False, description="The data may hold direct identifiers (admission then skips its scan)."
    )


class DecisionIn(BaseModel):
    """A decision's reason: required to reject, optional to approve or revoke."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, max_length=500)


class HashedDatasetOut(BaseModel):
    """A dataset of an approval recorded on the host: its path there and its content hash."""

    path: str
    sha256: str


class ApprovalOut(BaseModel):
    """An approval request or approval, with its state now and who asked for and decided it."""

    id: str
    tenant: str | None = Field(description="The tenant it belongs to; null: recorded on the host by an operator.")
    state: ApprovalState = Field(
        description="pending, rejected, withdrawn or revoked as decided; an approved one is expired past its "
        "expiry, exhausted when its runs are used, else active (only active admits jobs)."
    )
    purpose: str
    datasets: list[str] = Field(description="name:version datasets of a tenant's request.")
    hashed_datasets: list[HashedDatasetOut] = Field(description="Datasets of a host approval, by content hash.")
    max_runs: int | None
    runs_used: int
    expires_at: str | None
    runtimes: list[str] | None
    max_gpus: int
    allow_identifiers: bool
    requested_at: str
    requested_by: str = Field(description="The requesting principal: a key id, jwt:<sub>, or cli:<user>.")
    requested_by_kind: str = Field(description="api_key, jwt or cli.")
    decided_by: str | None = Field(description="Who approved, rejected or withdrew it.")
    decided_at: str | None
    reason: str | None = Field(description="The reason given with the decision.")
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None
