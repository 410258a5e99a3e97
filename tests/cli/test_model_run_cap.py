"""``warden model run-cap``, ``warden model show`` and the run measured at upload, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.cli.conftest import Warden, graph, one_error_line
from tests.registry import hostile
from warden.registry import RUN_CAP_FLOOR_MS
from warden.storage import ModelVersion

CAP_FIELDS = ("measured_run_ms", "run_cap_ms", "effective_run_cap_ms", "run_cap_source")


@pytest.fixture
def model_files(tmp_path: Path) -> dict[str, Path]:
    """Two small valid models, and the spinner a white image wakes."""
    paths = {"v1": tmp_path / "v1.onnx", "v2": tmp_path / "v2.onnx", "spin": tmp_path / "spin.onnx"}
    paths["v1"].write_bytes(graph(0.9))
    paths["v2"].write_bytes(graph(0.8))
    paths["spin"].write_bytes(hostile.spinning("brightness"))
    return paths


def caps_listed(warden: Warden, tenant: str = "acme") -> dict[str, list[tuple[object, ...]]]:
    """Each model's versions as ``model list --json`` shows them: (version, run_cap_ms, effective, source)."""
    return {
        m["name"]: [
            (v["version"], v["run_cap_ms"], v["effective_run_cap_ms"], v["run_cap_source"]) for v in m["versions"]
        ]
        for m in warden.json("model", "list", tenant)
    }


def test_model_run_cap_sets_and_resets_one_version(
    warden_on_each_backend: Warden, model_files: dict[str, Path]
) -> None:
    warden = warden_on_each_backend
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", model_files["v1"])
    warden.json("model", "push", "acme", "pets", model_files["v2"])
    [pets] = warden.json("model", "list", "acme")
    assert all(v["measured_run_ms"] > 0 for v in pets["versions"])
    assert caps_listed(warden) == {
        "pets": [(1, None, RUN_CAP_FLOOR_MS, "derived"), (2, None, RUN_CAP_FLOOR_MS, "derived")]
    }

    answer = warden.json("model", "run-cap", "acme", "pets:2", "--ms", "250")
    assert answer == {
        "name": "pets",
        "version": 2,
        "run_cap_ms": 250.0,
        "effective_run_cap_ms": 250.0,
        "run_cap_source": "set",
    }
    assert caps_listed(warden) == {"pets": [(1, None, RUN_CAP_FLOOR_MS, "derived"), (2, 250.0, 250.0, "set")]}
    with warden.services() as services:
        tenant = services.tenants.tenant_id("acme")
        assert services.registry.resolve(tenant, "pets").run_cap_ms == 250.0
        assert services.registry.resolve(tenant, "pets", 1).run_cap_ms == RUN_CAP_FLOOR_MS

    answer = warden.json("model", "run-cap", "acme", "pets:2", "--auto")
    assert answer == {
        "name": "pets",
        "version": 2,
        "run_cap_ms": None,
        "effective_run_cap_ms": RUN_CAP_FLOOR_MS,
        "run_cap_source": "derived",
    }
    assert caps_listed(warden) == {
        "pets": [(1, None, RUN_CAP_FLOOR_MS, "derived"), (2, None, RUN_CAP_FLOOR_MS, "derived")]
    }

    events = [entry["event"] for entry in warden.json("audit", "query", "--limit", "100")]
    changes = [
        (e["target"], e["details"]["version"], e["details"]["run_cap_ms"])
        for e in events
        if e["action"] == "model.run_cap"
    ]
    assert changes == [("acme/pets", 2, 250.0), ("acme/pets", 2, None)]
    assert {e["authenticator"] for e in events if e["action"] == "model.run_cap"} == {"cli"}


def test_human_output_of_model_run_cap(warden: Warden, model_files: dict[str, Path]) -> None:
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", model_files["v1"])
    result = warden("model", "run-cap", "acme", "pets:1", "--ms", "250")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Run-time cap of pets version 1: 250 ms, set by an operator.\n"
    result = warden("model", "run-cap", "acme", "pets:1", "--auto")
    assert result.stdout == (
        "Run-time cap of pets version 1: 1000 ms, derived: 8 x measured, at least 1000 ms, "
        "at most WARDEN_MAX_RUN_MS (10000 ms).\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["acme", "pets:1"], "invalid_argument", 2),  # neither --ms nor --auto
        (["acme", "pets:1", "--ms", "5", "--auto"], "invalid_argument", 2),
        (["acme", "pets", "--ms", "5"], "invalid_argument", 2),  # no version
        (["acme", "pets:x", "--ms", "5"], "invalid_argument", 2),
        (["acme", "pets:1", "--ms", "0"], "invalid_argument", 2),
        (["acme", "pets:1", "--ms", "-1"], "invalid_argument", 2),
        (["acme", "pets:1", "--ms", "nan"], "invalid_argument", 2),
        (["acme", "pets:1", "--ms", "inf"], "invalid_argument", 2),
        (["acme", "pets:1", "--ms", "10000.5"], "invalid_argument", 2),
        (["acme", "ghost:1", "--ms", "5"], "model_not_found", 1),
        (["acme", "pets:2", "--ms", "5"], "model_not_found", 1),
        (["ghost", "pets:1", "--ms", "5"], "tenant_not_found", 1),
        (["globex", "pets:1", "--ms", "5"], "model_not_found", 1),  # another tenant's model
    ],
)
def test_when_model_run_cap_fails_then_one_line_says_why_and_nothing_changes(
    warden: Warden, model_files: dict[str, Path], args: list[str], code: str, status: int
) -> None:
    warden.json("tenant", "create", "acme")
    warden.json("tenant", "create", "globex")
    warden.json("model", "push", "acme", "pets", model_files["v1"])
    warden.json("model", "run-cap", "acme", "pets:1", "--ms", "300")
    for extra in ((), ("--json",)):
        result = warden("model", "run-cap", *args, *extra)
        assert result.exit_code == status
        assert one_error_line(result).startswith(f"warden: error: {code}: ")
    assert caps_listed(warden) == {"pets": [(1, 300.0, 300.0, "set")]}


def test_a_cap_past_a_small_max_run_ms_is_refused_naming_it(
    warden: Warden, model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_MAX_RUN_MS", "500")
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", model_files["v1"])
    assert caps_listed(warden) == {"pets": [(1, None, 500.0, "derived")]}  # the floor is above the max
    result = warden("model", "run-cap", "acme", "pets:1", "--ms", "501")
    assert one_error_line(result) == (
        "warden: error: invalid_argument: run_cap_ms must be above 0 and at most WARDEN_MAX_RUN_MS (500 ms), got 501"
    )


def test_a_model_a_white_image_spins_is_refused_at_push_with_model_too_slow(
    warden: Warden, model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_MAX_RUN_MS", "300")
    warden.json("tenant", "create", "acme")
    result = warden("model", "push", "acme", "spin", model_files["spin"])
    assert result.exit_code != 0
    assert one_error_line(result) == (
        "warden: error: model_too_slow: on a white image the model ran longer than WARDEN_MAX_RUN_MS (300 ms) "
        "and was stopped"
    )
    assert warden.json("model", "list", "acme") == []


def test_model_show_lists_each_version_with_its_measurement_and_cap(
    warden_on_each_backend: Warden, model_files: dict[str, Path]
) -> None:
    warden = warden_on_each_backend
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", model_files["v1"], "--alias", "stable")
    warden.json("model", "push", "acme", "pets", model_files["v2"], "--max-batch-size", "1")
    warden.json("model", "push", "acme", "pets", model_files["v1"])
    warden.json("model", "run-cap", "acme", "pets:2", "--ms", "40")
    with warden.services() as services, services.db.session() as session:  # 3 as if pushed before measuring
        session.execute(update(ModelVersion).where(ModelVersion.version == 3).values(measured_run_ms=None))

    shown = warden.json("model", "show", "acme", "pets")
    assert shown == warden.json("model", "list", "acme")[0]
    assert [tuple(v[f] for f in CAP_FIELDS[1:]) for v in shown["versions"]] == [
        (None, RUN_CAP_FLOOR_MS, "derived"),
        (40.0, 40.0, "set"),
        (None, 10_000.0, "max"),
    ]
    assert [v["measured_run_ms"] is None for v in shown["versions"]] == [False, False, True]

    result = warden("model", "show", "acme", "pets")
    assert result.exit_code == 0, result.stderr
    text = re.sub(r"measured  [\d.]+ ms", "measured  N ms", result.stdout)
    blocks = text.split("pets version ")[1:]
    assert [block.splitlines()[0] for block in blocks] == ["1 (stable)", "2", "3"]
    assert "  batching  max batch 1, max queue delay server default\n" in blocks[1]
    assert "  measured  N ms, the slowest run at upload (black, white, noise, photo)\n" in blocks[0]
    assert blocks[0].endswith(
        "  run cap   1000 ms, derived: 8 x measured, at least 1000 ms, at most WARDEN_MAX_RUN_MS (10000 ms)\n"
    )
    assert blocks[1].endswith("  run cap   40 ms, set by an operator\n")
    assert "  measured  not measured (pushed before runs were)\n" in blocks[2]
    assert blocks[2].endswith("  run cap   10000 ms, WARDEN_MAX_RUN_MS (never measured)\n")
    assert shown["versions"][0]["sha256"] in blocks[0]


def test_model_show_of_a_missing_model_is_not_found(warden: Warden) -> None:
    warden.json("tenant", "create", "acme")
    result = warden("model", "show", "acme", "ghost")
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: model_not_found: ")
