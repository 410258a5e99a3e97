"""Response bodies of the simple API and the admin API, as documented in the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid argument or image",
        401: "Missing or invalid credential",
        403: "Credential not allowed here",
        404: "No such model among the caller's",
        413: "Body too large",
        415: "Unsupported content type",
    }.items()
}


class TenantIn(BaseModel):
    """A tenant to create."""

    name: str = Field(description="1-63 of a-z, 0-9, '-' and '_', starting and ending alphanumeric.")


class TenantOut(BaseModel):
    """A tenant."""

    name: str
    status: str
    created_at: str


class KeyIn(BaseModel):
    """A key to issue."""

    scope: str = Field(default="detect", pattern="^(detect|admin)$")


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


class AdminModelOut(BaseModel):
    """A model with its versions and aliases."""

    name: str
    versions: list[VersionOut]
    aliases: dict[str, AliasOut]


class AliasIn(BaseModel):
    """Point an alias at a version (``weight``: the canary's percent of requests)."""

    version: int = Field(ge=1)
    weight: int | None = Field(default=None, ge=0, le=100)
