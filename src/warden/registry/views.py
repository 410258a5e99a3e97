"""What the registry answers: versions, models, aliases, the version a request resolves to, batching.

Plain frozen values, so front ends (HTTP, CLI) and the serving engine read them without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from warden.errors import InvalidArgument
from warden.registry.run_cap import DEFAULT_MAX_RUN_MS

RunCapSource = Literal["set", "derived", "max"]
MAX_BATCH_SIZE: Final = 256
"""The largest ``max_batch_size`` a version may ask for."""
MAX_QUEUE_DELAY_MS: Final = 1000.0
"""The longest a request may wait for its batch to fill."""


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """A version's dynamic batching: images per run and how long a request may wait for others.

    ``None`` leaves the choice to the server (off on CPU, on for GPU providers).
    """

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None

    def check(self, info: dict[str, Any]) -> None:
        """Refuse values out of range, or batching of a model whose batch dimension is fixed."""
        size, delay = self.max_batch_size, self.max_queue_delay_ms
        if size is not None and not 1 <= size <= MAX_BATCH_SIZE:
            raise InvalidArgument(f"max_batch_size must be 1-{MAX_BATCH_SIZE}, got {size}")
        if delay is not None and not 0.0 <= delay <= MAX_QUEUE_DELAY_MS:  # also refuses NaN
            raise InvalidArgument(f"max_queue_delay_ms must be 0-{MAX_QUEUE_DELAY_MS:g}, got {delay}")
        if size is not None and size > 1 and info.get("batch") is not None:
            raise InvalidArgument(
                f"the model's batch dimension is fixed at {info['batch']}: export it with a dynamic batch "
                "to batch requests together"
            )


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push stored: the model name, its new version number and the bytes' sha256."""

    name: str
    version: int
    sha256: str


@dataclass(frozen=True, slots=True)
class VersionView:
    """One version as listed."""

    version: int
    sha256: str
    size_bytes: int
    created_at: datetime
    batching: BatchSettings = BatchSettings()
    measured_run_ms: float | None = None
    """The slowest run measured at upload (``None``: pushed before runs were measured)."""
    run_cap_ms: float | None = None
    """The cap an operator set (``None``: derived from the measurement)."""
    effective_run_cap_ms: float = float(DEFAULT_MAX_RUN_MS)
    """The cap serving applies (see :mod:`warden.registry.run_cap`)."""

    @property
    def run_cap_source(self) -> RunCapSource:
        """Where the effective cap comes from: ``set`` by an operator, ``derived`` from the measurement, or the
        server's ``max`` (``WARDEN_MAX_RUN_MS``) for a version never measured."""
        if self.run_cap_ms is not None:
            return "set"
        return "derived" if self.measured_run_ms is not None else "max"


@dataclass(frozen=True, slots=True)
class AliasView:
    """An alias: the version it points at and, for ``canary``, its share of requests in percent."""

    version: int
    weight: int


@dataclass(frozen=True, slots=True)
class ModelView:
    """A model with its versions (oldest first) and aliases."""

    name: str
    versions: list[VersionView]
    aliases: dict[str, AliasView] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """The version a request is served by, with what validation learnt about it."""

    name: str
    version: int
    sha256: str
    info: dict[str, Any]
    batching: BatchSettings = BatchSettings()
    shared: bool = False
    """Whether a session of these bytes may serve every tenant (marked shareable, or the server shares all)."""
    run_cap_ms: float = float(DEFAULT_MAX_RUN_MS)
    """The longest one run may take, per image, in ms (the version's effective cap); past it the run is stopped."""


@dataclass(frozen=True, slots=True)
class SharedBlobView:
    """Bytes marked shareable across tenants: by whom (an operator key id, or ``cli:`` and a user) and when."""

    sha256: str
    marked_by: str
    marked_at: datetime
