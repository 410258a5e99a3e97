"""Who is calling: derived only from a verified credential, never from anything else in a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from warden.errors import Forbidden
from warden.tenancy.quota import Quota


class Scope(StrEnum):
    """What a credential may do; a key has exactly one scope, so one key never holds two duties.

    - ``detect``: run detections on its tenant's models.
    - ``admin``: administer its tenant (keys, models), or every tenant for an operator key; may
      also request approvals for its tenant.
    - ``train``: a data scientist's key: request approvals for its tenant (later: use its datasets
      and jobs); it cannot detect, nor manage keys or models.
    - ``approve``: a data-protection officer's key: read and decide (approve, reject, revoke) the
      approval requests of its tenant, or of every tenant for an operator-wide one; nothing else.
    """

    DETECT = "detect"
    ADMIN = "admin"
    TRAIN = "train"
    APPROVE = "approve"


OPERATOR_SCOPES = frozenset({Scope.ADMIN, Scope.APPROVE})
"""The scopes a key bound to no tenant may have: an operator's, or an operator-wide approver's."""
REQUEST_SCOPES = frozenset({Scope.ADMIN, Scope.TRAIN})
"""The scopes of a tenant's key that may request (and withdraw) approvals."""


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

    @property
    def is_approver(self) -> bool:
        """An ``approve`` credential: of its tenant, or operator-wide when bound to no tenant."""
        return self.scope is Scope.APPROVE

    def tenant(self) -> int:
        """The caller's tenant id; ``Forbidden`` for operator keys, which belong to no tenant."""
        if self.tenant_id is None:
            raise Forbidden("this route needs a key of a tenant")
        return self.tenant_id
