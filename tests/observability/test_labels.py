"""Label values stay bounded: the first tenants and models seen keep their names, the rest are ``other``."""

from __future__ import annotations

import pytest

from warden.observability import FinishedRequest
from warden.observability.labels import NONE, OPERATOR, OTHER, BoundedLabels


def test_when_the_tenant_cap_is_reached_then_later_tenants_are_other() -> None:
    labels = BoundedLabels(max_tenants=2)
    assert [labels.tenant(name) for name in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]
    assert labels.tenants() == ["a", "b"]


def test_callers_without_a_tenant_take_no_slot() -> None:
    labels = BoundedLabels(max_tenants=1)
    assert labels.tenant(None) == NONE
    assert labels.tenant(None, operator=True) == OPERATOR
    assert labels.tenant("other") == OTHER  # a tenant named like the fold shares it and takes no slot
    assert labels.tenant("a") == "a"
    assert labels.tenants() == ["a"]


def test_models_are_capped_per_labelled_tenant_and_folded_tenants_models_are_other() -> None:
    labels = BoundedLabels(max_tenants=1, max_models=2)
    tenant = labels.tenant("a")
    assert [labels.model(tenant, m) for m in ("x", "y", "z", "x")] == ["x", "y", OTHER, "x"]
    folded = labels.tenant("b")
    assert folded == OTHER
    assert labels.model(folded, "x") == OTHER
    assert labels.model(tenant, None) == NONE
    assert labels.model(NONE, "x") == OTHER


def test_zero_caps_fold_everything() -> None:
    labels = BoundedLabels(max_tenants=0, max_models=0)
    assert labels.tenant("a") == OTHER
    with pytest.raises(ValueError, match="negative"):
        BoundedLabels(max_tenants=-1)


@pytest.mark.parametrize(
    ("status", "code", "outcome", "refusal"),
    [
        (200, None, "2xx", None),
        (404, "model_not_found", "4xx", None),
        (429, "rate_limited", "4xx", "rate_limited"),
        (429, "quota_exceeded", "4xx", "quota_exceeded"),
        (503, "over_capacity", "5xx", "over_capacity"),
        (503, "audit_unavailable", "5xx", "audit_unavailable"),
        (504, "deadline_exceeded", "5xx", "deadline_exceeded"),
        (499, "client_closed_request", "4xx", None),
        (500, "internal", "5xx", None),
    ],
)
def test_a_finished_requests_outcome_and_refusal_reason(
    status: int, code: str | None, outcome: str, refusal: str | None
) -> None:
    finished = FinishedRequest(request_id=None, method="POST", route="/", status=status, code=code, total=0.0)
    assert (finished.outcome, finished.refusal) == (outcome, refusal)
