"""Who is calling: derived only from a verified credential, never from anything else in a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from warden.errors import Forbidden
from warden.tenancy.quota import Quota


class Scope(StrEnum):
    """What a credential may do: run detections, or administer (its tenant, or everything for operators)."""

    DETECT = "detect"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: tenant (``None`` for operators), credential id, scope, authenticator, quota."""

    tenant_id: int | None
    tenant_name: str | None
    key_id: str
    scope: Scope
    authenticator: str
    quota: Quota = field(default_factory=Quota)

    @property
    def is_operator(self) -> bool:
        """An admin credential bound to no tenant: may manage every tenant."""
        return self.tenant_id is None and self.scope is Scope.ADMIN

    def tenant(self) -> int:
        """The caller's tenant id; ``Forbidden`` for operator keys, which belong to no tenant."""
        if self.tenant_id is None:
            raise Forbidden("this route needs a key of a tenant")
        return self.tenant_id
