"""Warden's settings: one pydantic-settings class read from ``WARDEN_*`` environment variables.

Configuration fails loudly: a ``WARDEN_`` variable that names no setting, or a
value of the wrong type, stops start-up with a message naming it.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from warden.errors import InvalidArgument

ENV_PREFIX = "WARDEN_"
REPLICA_ID_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$"
"""A replica id: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (it names an audit stream)."""

NAME_REGEX: Final = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
"""Tenant and model names (compiled by ``warden.tenancy``; always matched whole)."""

_ALLOWLIST_ENTRY: Final = r"^[A-Za-z0-9\[][^\s@]*(?:@sha256:[0-9a-f]{64})?$"
"""A job image allow-list entry: a repository pattern, optionally pinned to one sha256 digest."""


def default_replica_id() -> str:
    """This machine's host name, reduced to the replica-id alphabet (``warden`` when nothing is left)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip("._-")[:63]
    return cleaned or "warden"


def _lower(value: object) -> object:
    """Level names are accepted in any case (``INFO`` as ``info``)."""
    return value.lower() if isinstance(value, str) else value


def _gpu_list(value: str) -> str:
    """``WARDEN_JOB_GPUS`` checked entry by entry now (``auto`` is discovered when a job asks for a GPU)."""
    from warden.jobs.gpus import InvalidGpuList, parse_gpu_list  # noqa: PLC0415 - the grammar lives with the pool

    try:
        parse_gpu_list(value)
    except InvalidGpuList as exc:
        raise ValueError(exc.message) from None
    return value


class Settings(BaseSettings):
    """Every setting Warden reads; each can be given as ``WARDEN_<NAME>`` or as a keyword."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=Path("warden-data"),
        description="Directory holding the SQLite database, the model blobs and the server secret.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; default SQLite (WAL) at DATA_DIR/warden.db. "
        "Use postgresql+psycopg://… for several replicas.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Server secret keying API-key hashes; default a random key kept in DATA_DIR/secret.key (0600).",
    )
    previous_secret_keys: list[SecretStr] = Field(
        default=[],
        description="Server secrets used before a rotation, as a JSON list: API keys issued under them still "
        "authenticate and audit checkpoints signed with them still verify; everything new uses "
        "WARDEN_SECRET_KEY. Drop one once every key issued before the rotation is revoked.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0) for rate limits and daily caps shared by replicas; "
        "default in memory, daily caps in the database.",
    )
    redis_prefix: str = Field(
        default="warden",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,62}$",
        description="Prefix of every Redis key Warden writes, so that deployments sharing one Redis keep "
        "separate budgets; the replicas of one deployment must use the same.",
    )
    model_store: Path | None = Field(
        default=None,
        description="Directory of the content-addressed model blobs; default DATA_DIR/blobs. Replicas sharing "
        "one database must mount the same directory here (a shared volume), so a model pushed through any "
        "replica is served by all.",
    )
    serve_tenants: list[Annotated[str, StringConstraints(pattern=f"^{NAME_REGEX}$")]] | None = Field(
        default=None,
        description="Tenants this replica serves, as a JSON list (a Deployment dedicated to one tenant); "
        "credentials of any other tenant are refused with 403 tenant_not_served. Operator keys always work. "
        "Default: every tenant.",
    )
    device: str = Field(default="cpu", description="ONNX Runtime device: cpu, cuda[:N], tensorrt[:N] or auto.")
    threads: int = Field(
        default=1,
        ge=1,
        description="ONNX Runtime intra-op threads per session; with one worker per core, 1 measured best "
        "(2 sessions x 1 thread gave ~5% more images/s than 1 x 2 on 2 cores; 2 x 2 lost ~40%).",
    )
    workers: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        description="Inference workers of the fair scheduler (default: one per CPU core).",
    )
    headroom: int | None = Field(
        default=None,
        ge=0,
        description="Workers kept free for other tenants while more than one tenant is active, so a flood "
        "from one cannot make another wait for a running job (must be below WARDEN_WORKERS; 0: off). "
        "Default: automatic, one worker kept free when there are two or more.",
    )
    cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a key lookup and a model resolution are reused without a database query; "
        "bounds how long a change made by another process (the CLI, another replica) goes unseen. 0: off.",
    )
    model_memory_budget: int | None = Field(
        default=None, ge=1, description="Bytes of model sessions kept resident (LRU beyond); default unlimited."
    )
    session_memory_limit: int = Field(
        default=4 * 1024**3,
        ge=64 * 1024**2,
        description="Bytes one model session's ONNX Runtime arena may hold for its runs (and one call's input "
        "tensor may take), at upload validation and in serving; a run asking for more fails with invalid_model "
        "instead of growing the process. On CUDA it is also the session's GPU memory limit.",
    )
    share_models: Literal["per-tenant", "across-tenants"] = Field(
        default="per-tenant",
        description="per-tenant: identical model bytes pushed by several tenants load one session per tenant "
        "(unless an operator marked them shareable: `warden model share`), so a fast first request tells no "
        "tenant that another holds the same model; across-tenants: one session serves them all (less memory).",
    )
    max_timeout_ms: int = Field(
        default=60_000, ge=1, description="Longest a request may wait and run; clients may ask for less."
    )
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1, description="Largest request image, in bytes.")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Largest image, in width × height pixels.")
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="Largest uploaded model, in bytes.")
    max_run_ms: int = Field(
        default=10_000,
        ge=1,
        description="The longest one model run may take, per image, in milliseconds: a model measured slower at "
        "upload (on a black, a white, a noise image or a photo) is refused with model_too_slow, and every "
        "version's run-time cap is at most this.",
    )
    max_json_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest JSON request body of the admin routes, in bytes (refused with 413 before it is read).",
    )
    max_images_per_request: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Most images one /v2 inference request may carry (each also counts against the tenant's rate).",
    )
    max_answer_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest detection answer, in bytes; a bigger one is refused with answer_too_large, never built.",
    )
    jwt_issuer: str | None = Field(
        default=None, description="Accept JWT bearer tokens from this issuer (needs a JWKS file or a public key)."
    )
    jwt_audience: str | None = Field(
        default=None,
        description="Audience JWT bearer tokens must name; required with WARDEN_JWT_ISSUER (unless "
        "WARDEN_JWT_AUDIENCE_OPTIONAL=true), so a token the issuer minted for another service is refused.",
    )
    jwt_audience_optional: bool = Field(
        default=False,
        description="Accept JWTs without checking their audience when WARDEN_JWT_AUDIENCE is unset: any token "
        "of the issuer, whichever service it was minted for, then authenticates here.",
    )
    jwt_max_lifetime_seconds: int = Field(
        default=86_400,
        ge=60,
        description="Longest a JWT may live (exp - iat, and iat is required); a longer-lived token is refused. "
        "The default, a day, admits the usual identity-provider defaults (an hour; 60-90 minutes for Entra ID; "
        "24 hours for Auth0) and refuses tokens minted to live for weeks.",
    )
    jwt_jwks_file: Path | None = Field(default=None, description="JWKS file holding the issuer's public keys.")
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key of the issuer (instead of JWKS)."
    )
    jwt_tenant_claim: str = Field(default="tenant", description="Claim that names the caller's tenant.")
    jwt_scope_claim: str = Field(default="scope", description="Claim holding scopes ('detect', 'admin').")
    jwt_algorithms: list[str] = Field(
        default=["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"],
        description="Signature algorithms accepted; 'none' and HMAC algorithms are always refused.",
    )
    replica_id: str = Field(
        default_factory=default_replica_id,
        pattern=REPLICA_ID_PATTERN,
        description="This replica's name, used as its audit stream id; default the host name. "
        "Replicas sharing one database need distinct ids.",
    )
    audit_durability: Literal["sync", "async"] = Field(
        default="sync",
        description="sync: a request is answered only once its audit record is committed (group commit); "
        "async: records are committed in the background, just after the answer.",
    )
    audit_fail_closed: bool = Field(
        default=True,
        description="Refuse work with 503 audit_unavailable while the audit store cannot commit records.",
    )
    audit_client_address: Literal["hashed", "truncated", "full"] = Field(
        default="hashed",
        description="How client addresses are recorded: hashed (keyed HMAC, pseudonymised), "
        "truncated (IPv4 /24, IPv6 /48) or full.",
    )
    audit_checkpoint_every: int = Field(
        default=1000, ge=1, description="Records between two signed audit checkpoints (one more on clean close)."
    )
    host: str = Field(default="127.0.0.1", description="Address `warden serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `warden serve` listens on.")
    # --- the HTTP server's edge (warden.api.server) ---
    http_max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers), in bytes; beyond it 431 headers_too_large "
        "and the connection is closed.",
    )
    http_max_headers: int = Field(
        default=100, ge=1, description="Most headers one request may carry; beyond it 431 headers_too_large."
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a client has to send a whole request head once it starts one (or once it connects); "
        "then 408 request_timeout and the connection is closed (slowloris). Idle keep-alive is separate (5 s).",
    )
    http_body_grace_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a request body may take before WARDEN_HTTP_BODY_MIN_RATE applies; each byte received "
        "extends the deadline by 1/MIN_RATE seconds. A body slower than that is cut with 408 request_timeout.",
    )
    http_body_min_rate: int = Field(
        default=1024,
        ge=1,
        description="Bytes per second a request body must average after the grace period (time the server itself "
        "spends not reading does not count).",
    )
    http_max_connections_per_client: int = Field(
        default=64,
        ge=1,
        description="Open connections allowed from one client address; further ones are closed at once. "
        "Connections from WARDEN_TRUSTED_PROXIES are not counted (the proxy limits its own clients).",
    )
    shutdown_drain_seconds: int = Field(
        default=15,
        ge=1,
        le=600,
        description="On SIGTERM or SIGINT, seconds in-flight requests get to finish before they are cancelled; "
        "then the audit trail is flushed and sealed (up to 10 s more). Keep the sum under the orchestrator's "
        "grace period (Kubernetes: 30 s).",
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="Addresses of reverse proxies (a JSON list of IPs or CIDRs) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed: the client address audited, and HTTPS for the console's Secure cookie. "
        "Empty: forwarded headers are ignored.",
    )
    console_session_seconds: int = Field(
        default=3600,
        ge=60,
        le=86_400,
        description="Lifetime of a web-console session (the key exchanged at sign-in), in seconds; absolute, "
        "not renewed by use. Revoking the key or suspending the tenant ends it at once.",
    )
    # --- jobs (warden.jobs) ---
    job_image_allowlist: list[Annotated[str, StringConstraints(pattern=_ALLOWLIST_ENTRY)]] = Field(
        default=[],
        description="Images `warden job run` may use (podman, docker, kubernetes backends), as a JSON list: "
        "a pinned reference (name@sha256:<64 hex>) allows that digest, a repository pattern without digest "
        "(registry.example/team/*) any digest of it; empty: any image pinned by digest.",
    )
    job_max_output_bytes: int = Field(
        default=1024**3,
        ge=4096,
        description="Default for `warden job run --max-output`: bytes a job may write to /output (bwrap: a tmpfs "
        "of that size, held in memory and counted against the job's memory cgroup); past it the job is stopped "
        "and ends limit_exceeded.",
    )
    job_max_log_bytes: int = Field(
        default=64 * 1024**2,
        ge=1024,
        description="Default for `warden job run --max-log`: bytes of stdout and stderr together a job may write; "
        "past it nothing more is kept or shown and the job is stopped (limit_exceeded).",
    )
    job_gpus: Annotated[str, AfterValidator(_gpu_list)] = Field(
        default="",
        description="GPUs `warden job run --gpus N` lends to jobs, each to one job at a time: a comma-separated "
        "list of device indexes as nvidia-smi numbers them (0,1), GPU UUIDs (GPU-…) or MIG device UUIDs (MIG-…), "
        "or auto (every GPU NVML lists, a GPU in MIG mode as its MIG devices; needs the nvidia-ml-py package, and "
        "without it or a driver there are none). Empty: no GPUs; a job asking for one is refused.",
    )
    # --- datasets (warden.datasets) ---
    max_dataset_bytes: int = Field(
        default=256 * 1024**2,
        ge=1,
        description="Largest dataset upload (POST /v1/datasets/{name}, `warden dataset push`), in bytes; "
        "past it 413 payload_too_large.",
    )
    dataset_quota_bytes: int = Field(
        default=10 * 1024**3,
        ge=0,
        description="Bytes of de-identified datasets a tenant may keep stored (erased versions do not count); "
        "past it 429 storage_quota_exceeded.",
    )
    staging_dir: Path = Field(
        default=Path("/dev/shm"),  # noqa: S108 (each push makes its own 0700 folder there with mkdtemp)
        description="Where an upload and its de-identified result are staged while de-identification runs "
        "(a private 0700 folder, removed after each push); it must be on a memory filesystem (tmpfs), so raw "
        "data never reaches a disk in clear: otherwise pushes are refused with staging_unavailable.",
    )
    # --- observability (warden.observability) ---
    metrics_public: bool = Field(
        default=False,
        description="Serve GET /metrics without credentials (for an in-cluster scraper); "
        "false: it needs the operator's admin key as a Bearer token. Metrics name tenants and models.",
    )
    metrics_max_tenants: int = Field(
        default=100,
        ge=0,
        description="Tenants given their own metrics label (the first seen by this process); "
        'the others are counted under tenant="other", so a scrape stays bounded.',
    )
    metrics_max_models: int = Field(
        default=20,
        ge=0,
        description="Models given their own metrics label per labelled tenant (the first seen); the others "
        'are counted under model="other".',
    )
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="`warden serve` logs: json (one JSON object per line) or console (human-readable key=value).",
    )
    log_level: Annotated[Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)] = Field(
        default="info",
        description="Least severe log level written (debug also writes the access lines of probes and scrapes).",
    )

    @model_validator(mode="after")
    def _jwt_audience_is_checked(self) -> Settings:
        if self.jwt_issuer is not None and self.jwt_audience is None and not self.jwt_audience_optional:
            raise ValueError(
                "WARDEN_JWT_AUDIENCE is required with WARDEN_JWT_ISSUER (a token minted for another service of the "
                "issuer would authenticate here); set it, or WARDEN_JWT_AUDIENCE_OPTIONAL=true to accept any audience"
            )
        return self

    @model_validator(mode="after")
    def _headroom_leaves_a_worker(self) -> Settings:
        if self.headroom is not None and self.headroom >= self.workers:
            raise ValueError(f"headroom ({self.headroom}) must be below workers ({self.workers})")
        return self

    @property
    def resolved_model_store(self) -> Path:
        """Where model blobs live: the configured store, else ``DATA_DIR/blobs``."""
        return self.model_store if self.model_store is not None else self.data_dir / "blobs"

    @property
    def resolved_database_url(self) -> str:
        """The database URL to use: the configured one, else SQLite inside the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'warden.db'}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from ``WARDEN_*`` variables plus explicit overrides (``None`` means not given).

    Refuses a ``WARDEN_`` variable that names no setting, and any invalid value,
    with an ``InvalidArgument`` naming it.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise InvalidArgument(f"unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(f"invalid settings: {problems}") from None
    except SettingsError as exc:  # a list or mapping setting whose variable is not JSON
        raise InvalidArgument(f"invalid settings: {exc}") from None
