"""deploy/grafana/warden.json queries only series a Warden scrape actually has, with labels they carry."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.observability.conftest import Observed, Scrape
from warden.tenancy import Quota

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "warden.json"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"})


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panel targets and template-variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (label_values(NAME, label) included)."""
    found = set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    stripped = re.sub(r"label_values\([^)]*\)", " ", expr)
    stripped = _STRING.sub(" ", stripped)
    stripped = re.sub(r"\{[^}]*\}", " ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    found |= {name for name in _IDENTIFIER.findall(stripped) if name not in _KEYWORDS}
    return found


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """``(series name, label names it matches on)`` for every ``name{...}`` selector."""
    for name, matchers in _SELECTOR.findall(_quoted_braces_hidden(expr)):
        yield name, set(_MATCHER.findall(matchers))


def _quoted_braces_hidden(expr: str) -> str:
    return _STRING.sub(lambda m: '"' + "x" * (len(m.group(0)) - 2) + '"', expr)


@pytest.fixture(scope="module")
def scrape(observed: Observed) -> Scrape:
    """A scrape after a detection, a batched detection and a refusal: every series has samples."""
    assert observed.detect(observed.alpha, "fall") == 200
    assert observed.detect(observed.alpha, "batched") == 200
    limited = observed.tenant("limited", Quota(rps=0.01, burst=1))
    assert [observed.detect(limited), observed.detect(limited)] == [200, 429]
    return observed.scrape()


def test_the_dashboard_is_grafana_json_with_panels_and_a_tenant_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "warden-overview"
    assert isinstance(dashboard["schemaVersion"], int)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "tenant"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_expression_reads_only_series_the_scrape_has(scrape: Scrape) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = scrape.names()
    used: set[str] = set()
    for expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"no series in {expr!r}"
        assert names <= exposed, f"{expr!r} reads {sorted(names - exposed)}, not in a scrape"
        used |= names
    required = {
        "warden_requests_total",  # requests/s by tenant and outcome
        "warden_stage_duration_seconds_bucket",  # p50/p99 per stage
        "warden_request_duration_seconds_bucket",
        "warden_refusals_total",
        "warden_scheduler_queued",
        "warden_models_resident_bytes",
        "warden_audit_backlog",
        "warden_audit_wait_seconds_bucket",
        "warden_batch_size_bucket",
    }
    assert required <= used, sorted(required - used)


def test_every_label_a_selector_matches_on_is_one_its_series_carry(scrape: Scrape) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    checked = 0
    for expr in expressions(dashboard):
        for name, labels in selectors(expr):
            carried = {label for sample in scrape.samples if sample.name == name for label in sample.labels}
            assert labels <= carried, f"{name} has no label {sorted(labels - carried)} (in {expr!r})"
            checked += 1
    assert checked > 5


def test_the_expression_parser_finds_names_and_skips_functions_labels_and_strings() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, stage) (rate(a_b_bucket{tenant=~"x{y}", route="POST /v1"}[5m])))'
    assert metric_names(expr) == {"a_b_bucket"}
    assert metric_names("sum(rate(x_sum[$__rate_interval])) / sum(rate(x_count[1m]))") == {"x_sum", "x_count"}
    assert metric_names("label_values(warden_requests_total, tenant)") == {"warden_requests_total"}
    assert list(selectors('rate(m{tenant=~"$tenant", outcome=~"4xx|5xx"}[1m])')) == [("m", {"tenant", "outcome"})]
