"""Prometheus metrics of one app, in a registry of its own (never the process-wide default).

Each :class:`Metrics` owns a ``CollectorRegistry``, so several apps in one process
(tests, embedding) never share or collide. Per-request series are recorded by
:meth:`Metrics.observe` when a request finishes; the state of the engine and of
the audit writer is read when Prometheus scrapes. ``tenant`` and ``model`` label
values are bounded (see :mod:`warden.observability.labels`); ``route`` is a route
template; ``code`` a stable error code. No label ever holds a key, a token, a client
address, a raw path or anything derived from an image.

Series (``_total``, ``_bucket``, ``_sum`` and ``_count`` suffixes as Prometheus writes them):

=========================================  =========  ==============================================
name                                       type       labels / meaning
=========================================  =========  ==============================================
warden_requests_total                      counter    tenant, model, route, outcome (2xx..5xx), code
warden_request_duration_seconds            histogram  tenant, model, route: server time, whole answer
warden_stage_duration_seconds              histogram  tenant, model, stage (queue, decode, preprocess, inference)
warden_refusals_total                      counter    tenant, reason (rate_limited, quota_exceeded,
                                                      over_capacity, deadline_exceeded,
                                                      audit_unavailable)
warden_audit_wait_seconds                  histogram  wait of a successful answer for its audit record
                                                      (group commit latency as clients see it)
warden_http_requests_in_flight             gauge      requests being handled by this app
warden_scheduler_running                   gauge      tenant: requests running on a worker
warden_scheduler_queued                    gauge      tenant: requests waiting for a worker
warden_scheduler_worker_seconds_total      counter    tenant: worker time its requests used (what fair
                                                      queuing charges it)
warden_runs_stopped_total                  counter    cause (deadline, run_cap, disconnect): model runs
                                                      stopped inside ONNX Runtime (this process)
warden_batch_size                          histogram  requests per batched model run (_count: runs)
warden_models_resident                     gauge      sessions loaded
warden_models_resident_bytes               gauge      model bytes of the sessions loaded
warden_models_memory_budget_bytes          gauge      the budget (absent when unlimited)
warden_model_loads_total                   counter    cold loads
warden_model_load_seconds_total            counter    time spent in cold loads
warden_model_reuses_total                  counter    requests served by an already loaded session
warden_model_evictions_total               counter    sessions evicted to fit the budget
warden_audit_backlog                       gauge      audit records accepted, not yet committed
warden_audit_healthy                       gauge      1 while the audit store commits, else 0
warden_audit_commits_total                 counter    group commits (transactions)
warden_audit_commit_seconds                summary    time of each successful group commit (_sum / _count)
warden_audit_records_total                 counter    audit records committed
warden_audit_dropped_total                 counter    audit records refused (backlog full) or lost
warden_metrics_tenant_labels               gauge      tenants with a label of their own (cap reached:
                                                      the rest count as tenant="other")
warden_build_info                          gauge      version: always 1
=========================================  =========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from warden import __version__
from warden.detection.runs import DEADLINE, DISCONNECT, RUN_CAP, WATCHDOG
from warden.observability.labels import BoundedLabels
from warden.observability.request import FinishedRequest

if TYPE_CHECKING:
    from warden.audit import AuditLog
    from warden.serving import DetectionEngine

LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: sub-millisecond refusals up to the longest deadline a request may have."""
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128)
"""Requests per batched run."""


class Metrics:
    """The metrics of one app: record finished requests, collect engine and audit state, render a scrape.

    ``engine`` is a callable (the app may replace its engine after a shutdown) and
    ``audit`` the app's audit log; either may be left out (no such series then).
    """

    def __init__(
        self,
        *,
        max_tenants: int = 100,
        max_models: int = 20,
        engine: Callable[[], DetectionEngine] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.labels = BoundedLabels(max_tenants, max_models)
        registry = self.registry
        self._requests = Counter(
            "warden_requests",
            "HTTP requests answered, by tenant, model, route, status class and error code.",
            ["tenant", "model", "route", "outcome", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "warden_request_duration_seconds",
            "Server time of a request, from its arrival to the end of its answer.",
            ["tenant", "model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._stages = Histogram(
            "warden_stage_duration_seconds",
            "Time of a detection request in each stage: queue (waiting for a worker), decode, preprocess, inference.",
            ["tenant", "model", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._refusals = Counter(
            "warden_refusals",
            "Requests refused for load, quota or availability, by tenant and reason.",
            ["tenant", "reason"],
            registry=registry,
        )
        self._audit_wait = Histogram(
            "warden_audit_wait_seconds",
            "How long a successful answer waited for its audit record to be durable (group commit).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "warden_http_requests_in_flight", "HTTP requests being handled by this app.", registry=registry
        )
        Gauge("warden_build_info", "Warden's version (the value is always 1).", ["version"], registry=registry).labels(
            __version__
        ).set(1)
        registry.register(_LabelsCollector(self.labels))
        if engine is not None:
            registry.register(EngineCollector(engine, self.labels))
        if audit is not None:
            registry.register(AuditCollector(audit))

    def observe(self, finished: FinishedRequest) -> None:
        """Count a finished request and observe its durations."""
        tenant = self.labels.tenant(finished.tenant, operator=finished.operator)
        model = self.labels.model(tenant, finished.model)
        route = f"{finished.method} {finished.route}"
        self._requests.labels(tenant, model, route, finished.outcome, finished.code or "none").inc()
        self._duration.labels(tenant, model, route).observe(finished.total)
        for stage, seconds in finished.stages.items():
            self._stages.labels(tenant, model, stage).observe(seconds)
        if finished.refusal is not None:
            self._refusals.labels(tenant, finished.refusal).inc()
        if finished.audit is not None:
            self._audit_wait.observe(finished.audit)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """A scrape in the format ``accept`` asks for (Prometheus text by default): body and content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _LabelsCollector(Collector):
    def __init__(self, labels: BoundedLabels) -> None:
        self._labels = labels

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "warden_metrics_tenant_labels",
            f"Tenants with a label of their own (at most {self._labels.max_tenants}; the rest count as 'other').",
            value=len(self._labels.tenants()),
        )


class EngineCollector(Collector):
    """Reads the scheduler's load and batches, and the resident sessions, at scrape time."""

    def __init__(self, engine: Callable[[], DetectionEngine], labels: BoundedLabels) -> None:
        self._engine = engine
        self._labels = labels

    def collect(self) -> Iterable[Metric]:
        """The engine's state now."""
        engine = self._engine()
        yield from self._load(engine)
        yield _batch_histogram(engine.scheduler.batch_sizes())
        stats = engine.residency.stats()
        yield GaugeMetricFamily("warden_models_resident", "Model sessions loaded.", value=stats.resident)
        yield GaugeMetricFamily(
            "warden_models_resident_bytes", "Model bytes of the sessions loaded.", value=stats.resident_bytes
        )
        if stats.budget_bytes is not None:
            yield GaugeMetricFamily(
                "warden_models_memory_budget_bytes", "Bytes of sessions kept resident.", value=stats.budget_bytes
            )
        yield CounterMetricFamily("warden_model_loads", "Cold loads of a model session.", value=stats.loads)
        yield CounterMetricFamily(
            "warden_model_load_seconds", "Time spent loading model sessions.", value=stats.load_seconds
        )
        yield CounterMetricFamily("warden_model_reuses", "Runs served by a session already loaded.", value=stats.hits)
        yield CounterMetricFamily(
            "warden_model_evictions", "Sessions evicted to fit the memory budget.", value=stats.evictions
        )

    def _load(self, engine: DetectionEngine) -> Iterable[Metric]:
        running: dict[str, float] = dict.fromkeys(self._labels.tenants(), 0.0)  # idle tenants read 0
        queued = dict(running)
        for tenant, (now_running, now_queued) in engine.scheduler.load().items():
            label = self._labels.tenant(tenant)
            running[label] = running.get(label, 0.0) + now_running
            queued[label] = queued.get(label, 0.0) + now_queued
        yield _per_tenant("warden_scheduler_running", "Requests running on a worker, by tenant.", running)
        yield _per_tenant("warden_scheduler_queued", "Requests waiting for a worker, by tenant.", queued)
        used: dict[str, float] = dict.fromkeys(self._labels.tenants(), 0.0)
        for tenant, seconds in engine.scheduler.worker_seconds().items():
            label = self._labels.tenant(tenant)
            used[label] = used.get(label, 0.0) + seconds
        worker_time = CounterMetricFamily(
            "warden_scheduler_worker_seconds",
            "Worker time each tenant's requests used: what fair queuing charges it.",
            labels=["tenant"],
        )
        for tenant, seconds in sorted(used.items()):
            worker_time.add_metric([tenant], seconds)
        yield worker_time
        stopped = CounterMetricFamily(
            "warden_runs_stopped",
            "Model runs stopped inside ONNX Runtime, by cause (deadline, run_cap, disconnect), in this process.",
            labels=["cause"],
        )
        by_cause = WATCHDOG.stopped_by()
        for cause in (DEADLINE, RUN_CAP, DISCONNECT):
            stopped.add_metric([cause], by_cause.get(cause, 0))
        yield stopped


class AuditCollector(Collector):
    """Reads the audit writer's counters at scrape time."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def collect(self) -> Iterable[Metric]:
        """The writer's state now."""
        writer = self._audit.writer
        yield GaugeMetricFamily(
            "warden_audit_backlog", "Audit records accepted and not yet committed.", value=writer.backlog
        )
        yield GaugeMetricFamily(
            "warden_audit_healthy",
            "1 while the audit store commits records, 0 after a failed commit.",
            value=int(writer.healthy),
        )
        yield CounterMetricFamily("warden_audit_commits", "Audit group commits (transactions).", value=writer.commits)
        yield SummaryMetricFamily(
            "warden_audit_commit_seconds",
            "Time of the audit writer's successful group commits (the flush latency: _sum / _count).",
            count_value=writer.commits,
            sum_value=writer.commit_seconds,
        )
        yield CounterMetricFamily("warden_audit_records", "Audit records committed.", value=writer.written)
        yield CounterMetricFamily(
            "warden_audit_dropped",
            "Audit records refused (backlog full) or left unwritten at close.",
            value=writer.dropped,
        )


def _per_tenant(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["tenant"])
    for tenant, value in sorted(values.items()):
        family.add_metric([tenant], value)
    return family


def _batch_histogram(sizes: dict[int, int]) -> HistogramMetricFamily:
    buckets = [(str(float(b)), float(sum(n for size, n in sizes.items() if size <= b))) for b in BATCH_BUCKETS]
    buckets.append(("+Inf", float(sum(sizes.values()))))
    total = float(sum(size * n for size, n in sizes.items()))
    return HistogramMetricFamily(
        "warden_batch_size", "Requests per batched model run (_count: runs, _sum: requests).", buckets, total
    )


__all__ = ["AuditCollector", "EngineCollector", "Metrics"]
