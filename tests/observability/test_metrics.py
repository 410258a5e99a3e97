"""GET /metrics: counters and histograms move with requests, labels stay bounded, access is the operator's.

Through the in-process ASGI app with real ONNX models; every scrape is parsed with
prometheus_client's own parser.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.observability.conftest import Observed, Scrape, secret_of
from tests.registry import hostile
from warden.audit import AuditFilter
from warden.detection import DetectionModel
from warden.errors import DeadlineExceeded
from warden.observability import FinishedRequest, Metrics
from warden.serving.scheduler import TenantShare
from warden.tenancy import Quota

DETECT = "POST /v1/models/{name}/detect"
WAIT = 60.0
"""Seconds a test waits for a worker thread before it fails (never asserted upon)."""


def test_a_detection_counts_a_request_and_observes_every_stage(observed: Observed) -> None:
    before = observed.scrape()
    assert observed.detect(observed.alpha, "fall") == 200
    after = observed.scrape()

    ours = {"tenant": "alpha", "model": "fall"}
    counted = {**ours, "route": DETECT, "outcome": "2xx", "code": "none"}
    assert after.value("warden_requests_total", **counted) == before.value("warden_requests_total", **counted) + 1
    timed = {**ours, "route": DETECT}
    assert after.value("warden_request_duration_seconds_count", **timed) == (
        before.value("warden_request_duration_seconds_count", **timed) + 1
    )
    assert after.value("warden_request_duration_seconds_sum", **timed) > before.value(
        "warden_request_duration_seconds_sum", **timed
    )
    for stage in ("queue", "decode", "preprocess", "inference"):
        name = "warden_stage_duration_seconds_count"
        assert after.value(name, **ours, stage=stage) == before.value(name, **ours, stage=stage) + 1, stage
    assert after.value("warden_stage_duration_seconds_sum", **ours, stage="inference") > 0
    # Sync durability: the answer waited for its audit record, and the wait was observed.
    assert after.value("warden_audit_wait_seconds_count") == before.value("warden_audit_wait_seconds_count") + 1
    assert after.value("warden_audit_records_total") > before.value("warden_audit_records_total")
    assert after.value("warden_audit_commits_total") >= 1
    # The writer's own flush latency: one observation per group commit.
    assert after.value("warden_audit_commit_seconds_count") == after.value("warden_audit_commits_total")
    assert after.value("warden_audit_commit_seconds_sum") > before.value("warden_audit_commit_seconds_sum")
    assert after.value("warden_audit_healthy") == 1
    assert "warden_audit_backlog" in after.names()
    assert after.value("warden_models_resident") >= 1
    assert after.value("warden_models_resident_bytes") > 0
    assert after.value("warden_model_loads_total") >= 1
    assert after.value("warden_model_load_seconds_total") > 0
    assert after.value("warden_scheduler_running", tenant="alpha") == 0
    assert after.value("warden_scheduler_worker_seconds_total", tenant="alpha") > before.value(
        "warden_scheduler_worker_seconds_total", tenant="alpha"
    )
    assert after.value("warden_build_info") == 1


def test_runs_stopped_inside_onnx_runtime_are_counted_by_cause(observed: Observed) -> None:
    spinner = DetectionModel.load(hostile.spinning())
    white = spinner.prepare([np.full((64, 64, 3), 255, dtype=np.uint8)]).tensor
    before = observed.scrape()
    with pytest.raises(DeadlineExceeded):
        spinner.infer(white, cap=0.05)
    after = observed.scrape()
    assert after.value("warden_runs_stopped_total", cause="run_cap") == (
        before.value("warden_runs_stopped_total", cause="run_cap") + 1
    )
    assert after.value("warden_runs_stopped_total", cause="disconnect") == before.value(
        "warden_runs_stopped_total", cause="disconnect"
    )


def test_a_batched_run_is_observed_in_the_batch_size_histogram(observed: Observed) -> None:
    before = observed.scrape()
    assert observed.detect(observed.alpha, "batched") == 200
    after = observed.scrape()
    assert after.value("warden_batch_size_count") == before.value("warden_batch_size_count") + 1
    assert after.value("warden_batch_size_sum") == before.value("warden_batch_size_sum") + 1
    assert after.value("warden_batch_size_bucket", le="1.0") == before.value("warden_batch_size_bucket", le="1.0") + 1
    assert after.value("warden_batch_size_count") == observed.engine.scheduler.batch_counts()[0]


def test_refusals_are_counted_by_tenant_and_reason(observed: Observed) -> None:
    limited = observed.tenant("limited", Quota(rps=0.01, burst=1))
    capped = observed.tenant("capped", Quota(daily_requests=1))
    assert [observed.detect(limited), observed.detect(limited)] == [200, 429]
    assert [observed.detect(capped), observed.detect(capped)] == [200, 429]
    assert observed.detect("wdn_000000000000_" + "x" * 43) == 401
    scrape = observed.scrape()

    assert scrape.value("warden_refusals_total", tenant="limited", reason="rate_limited") == 1
    assert scrape.value("warden_refusals_total", tenant="capped", reason="quota_exceeded") == 1
    assert scrape.value("warden_refusals_total", tenant="limited", reason="quota_exceeded") == 0
    refused = {"route": DETECT, "outcome": "4xx"}
    assert scrape.value("warden_requests_total", tenant="limited", code="rate_limited", **refused) == 1
    assert scrape.value("warden_requests_total", tenant="capped", code="quota_exceeded", **refused) == 1
    assert scrape.value("warden_requests_total", tenant="limited", code="none", outcome="2xx") == 1
    # Refused before the model was resolved: no model label; and no stage was measured.
    assert scrape.label_values("warden_requests_total", "model") >= {"(none)", "m"}
    assert scrape.value("warden_stage_duration_seconds_count", tenant="limited") == 4  # the 200's four stages
    # A bad credential has no tenant: it is not a refusal, but it is counted.
    assert scrape.value("warden_requests_total", tenant="(none)", code="unauthenticated", **refused) >= 1


def test_the_scheduler_gauges_show_running_and_queued_work(observed: Observed) -> None:
    scheduler = observed.engine.scheduler
    share = TenantShare(max_concurrency=1)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(WAIT)

    first = scheduler.submit("alpha", hold, share=share)
    second = scheduler.submit("alpha", lambda: None, share=share)
    try:
        assert started.wait(WAIT)
        scrape = observed.scrape()
        assert scrape.value("warden_scheduler_running", tenant="alpha") == 1
        assert scrape.value("warden_scheduler_queued", tenant="alpha") == 1
        assert scrape.value("warden_http_requests_in_flight") == 1  # the scrape itself
    finally:
        release.set()
    first.future.result(WAIT)
    second.future.result(WAIT)
    idle = observed.scrape()
    assert idle.value("warden_scheduler_running", tenant="alpha") == 0
    assert idle.value("warden_scheduler_queued", tenant="alpha") == 0


def test_the_tenant_cap_folds_later_tenants_into_other(make_observed: Callable[..., Observed]) -> None:
    app = make_observed(metrics_max_tenants=2, metrics_max_models=1)
    assert app.detect(app.alpha, "tiny") == 200
    keys = [app.tenant(name) for name in ("second", "third", "fourth")]
    assert [app.detect(key) for key in keys] == [200, 200, 200]
    assert app.detect(app.alpha, "fall") == 200  # alpha's second model: past the model cap
    scrape = app.scrape()

    tenants = scrape.label_values("warden_requests_total", "tenant")
    assert tenants == {"alpha", "second", "other"}  # (the scrape itself is counted once it has answered)
    assert scrape.value("warden_requests_total", tenant="other", model="other", outcome="2xx") == 2
    assert scrape.value("warden_requests_total", tenant="alpha", model="tiny") == 1
    assert scrape.value("warden_requests_total", tenant="alpha", model="other") == 1
    assert "third" not in scrape.text
    assert "fourth" not in scrape.text
    assert scrape.value("warden_metrics_tenant_labels") == 2
    assert scrape.label_values("warden_stage_duration_seconds_count", "tenant") == {"alpha", "second", "other"}
    assert scrape.label_values("warden_scheduler_queued", "tenant") <= {"alpha", "second", "other"}


def test_metrics_need_the_operators_key_by_default(observed: Observed) -> None:
    client = observed.client
    anonymous = client.get("/metrics")
    assert (anonymous.status_code, anonymous.headers["X-Error-Code"]) == (401, "unauthenticated")
    for key in (observed.alpha, observed.alpha_admin):
        refused = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert (refused.status_code, refused.headers["X-Error-Code"]) == (403, "forbidden")
    request_id = uuid.uuid4().hex
    allowed = client.get(
        "/metrics", headers={"Authorization": f"Bearer {observed.operator}", "X-Request-ID": request_id}
    )
    assert allowed.status_code == 200
    assert allowed.headers["Content-Type"].startswith("text/plain")
    assert allowed.headers["Cache-Control"] == "no-store"
    assert Scrape(allowed.text).families
    # Scrapes are never audited (they would bury the trail), and /metrics is not part of the API schema.
    assert observed.services.audit.flush(timeout=WAIT)
    assert list(observed.services.audit.scan(AuditFilter(request_id=request_id))) == []
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_are_open_when_configured_public(make_observed: Callable[..., Observed]) -> None:
    app = make_observed(metrics_public=True)
    assert app.detect(app.alpha, "tiny") == 200
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        answer = app.client.get("/metrics", headers=headers)
        assert answer.status_code == 200
        assert Scrape(answer.text).value("warden_requests_total", tenant="alpha", model="tiny", code="none") == 1


def test_the_scrape_parses_and_no_label_holds_a_key_an_address_or_a_request_id(observed: Observed) -> None:
    request_id = uuid.uuid4().hex
    assert observed.detect(observed.alpha, "fall", **{"X-Request-ID": request_id}) == 200
    assert observed.client.get(f"/v1/models/{observed.alpha}/detect").status_code == 405
    assert observed.client.post(f"/v1/nowhere/{observed.alpha}").status_code == 404
    scrape = observed.scrape()
    assert scrape.families
    assert all(family.name.startswith("warden_") for family in scrape.families)
    values = {value for sample in scrape.samples for value in sample.labels.values()}
    for secret in (observed.alpha, secret_of(observed.alpha)[1], "testclient", request_id, "/v1/nowhere"):
        assert not any(secret in value for value in values), secret
    assert scrape.value("warden_requests_total", route="GET /v1/models/{name}/detect", code="method_not_allowed") >= 1
    assert scrape.value("warden_requests_total", route="POST (no route)", code="not_found") >= 1


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(observed: Observed) -> None:
    answer = observed.client.get(
        "/metrics",
        headers={"Authorization": f"Bearer {observed.operator}", "Accept": "application/openmetrics-text"},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")


def test_evictions_and_cold_loads_are_counted(make_observed: Callable[..., Observed]) -> None:
    app = make_observed(model_memory_budget=1)  # every idle session is evicted at once
    assert [app.detect(app.alpha, model) for model in ("tiny", "fall", "tiny")] == [200, 200, 200]
    scrape = app.scrape()
    assert scrape.value("warden_model_loads_total") == 3
    assert scrape.value("warden_model_evictions_total") == 3
    assert scrape.value("warden_models_resident") == 0
    assert scrape.value("warden_models_resident_bytes") == 0
    assert scrape.value("warden_models_memory_budget_bytes") == 1


def test_two_apps_in_one_process_keep_their_own_registries() -> None:
    one, two = Metrics(), Metrics()
    one.observe(FinishedRequest(request_id="r", method="GET", route="/v1/models", status=200, code=None, total=0.01))
    assert b'tenant="(none)"' in one.render()[0]
    assert b"warden_requests_total{" not in two.render()[0]
    assert not any(name.startswith("warden_") for name in REGISTRY._names_to_collectors)
