"""``warden model push --max-batch-size/--max-queue-delay-ms`` and ``warden model batching`` end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import NAMES, Warden, graph, one_error_line
from tests.detection.graphs import Box, anchor_free_rows, yolo_graph
from warden.registry import BatchSettings


def dynamic_graph(score: float = 0.9) -> bytes:
    """A small valid detection model with a dynamic batch dimension."""
    rows = anchor_free_rows([Box(32, 32, 20, 10, 1, score)], 3, 84)
    return yolo_graph(rows, input_shape=("batch", 3, 64, 64), metadata={"names": NAMES})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Model files: two with a dynamic batch, one whose batch is fixed at 1."""
    paths = {"dynamic": tmp_path / "dynamic.onnx", "dynamic2": tmp_path / "dynamic2.onnx", "fixed": tmp_path / "f.onnx"}
    paths["dynamic"].write_bytes(dynamic_graph(0.9))
    paths["dynamic2"].write_bytes(dynamic_graph(0.8))
    paths["fixed"].write_bytes(graph(0.7))
    return paths


def batching_listed(warden: Warden, tenant: str = "acme") -> dict[str, list[tuple[int, int | None, float | None]]]:
    """Each model's versions as ``model list --json`` shows them: (version, max_batch_size, max_queue_delay_ms)."""
    return {
        m["name"]: [(v["version"], v["max_batch_size"], v["max_queue_delay_ms"]) for v in m["versions"]]
        for m in warden.json("model", "list", tenant)
    }


def test_push_with_batching_options_and_list_shows_them(warden_on_each_backend: Warden, files: dict[str, Path]) -> None:
    warden = warden_on_each_backend
    warden.json("tenant", "create", "acme")
    pushed = warden.json(
        "model", "push", "acme", "pets", files["dynamic"], "--max-batch-size", "8", "--max-queue-delay-ms", "2.5"
    )
    assert pushed["version"] == 1
    warden.json("model", "push", "acme", "pets", files["dynamic2"])
    warden.json("model", "push", "acme", "solo", files["fixed"], "--max-batch-size", "1")
    assert batching_listed(warden) == {"pets": [(1, 8, 2.5), (2, None, None)], "solo": [(1, 1, None)]}
    [pets, _] = warden.json("model", "list", "acme")
    assert [list(v) for v in pets["versions"]] == [
        [
            "version",
            "sha256",
            "size_bytes",
            "created_at",
            "max_batch_size",
            "max_queue_delay_ms",
            "measured_run_ms",
            "run_cap_ms",
            "effective_run_cap_ms",
            "run_cap_source",
        ]
    ] * 2
    with warden.services() as services:
        tenant = services.tenants.tenant_id("acme")
        assert services.registry.resolve(tenant, "pets", 1).batching == BatchSettings(8, 2.5)


def test_model_batching_sets_and_resets_one_version(warden_on_each_backend: Warden, files: dict[str, Path]) -> None:
    warden = warden_on_each_backend
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", files["dynamic"])
    warden.json("model", "push", "acme", "pets", files["dynamic2"])
    answer = warden.json("model", "batching", "acme", "pets:2", "--max-batch-size", "16", "--max-queue-delay-ms", "5")
    assert answer == {"name": "pets", "version": 2, "max_batch_size": 16, "max_queue_delay_ms": 5.0}
    assert batching_listed(warden) == {"pets": [(1, None, None), (2, 16, 5.0)]}
    assert warden.json("model", "batching", "acme", "pets:1", "--max-queue-delay-ms", "0") == {
        "name": "pets",
        "version": 1,
        "max_batch_size": None,
        "max_queue_delay_ms": 0.0,
    }
    # Options left out go back to the server's choice.
    assert warden.json("model", "batching", "acme", "pets:2") == {
        "name": "pets",
        "version": 2,
        "max_batch_size": None,
        "max_queue_delay_ms": None,
    }
    assert batching_listed(warden) == {"pets": [(1, None, 0.0), (2, None, None)]}
    with warden.services() as services:
        tenant = services.tenants.tenant_id("acme")
        assert services.registry.resolve(tenant, "pets").batching == BatchSettings()
        assert services.registry.resolve(tenant, "pets", 1).batching == BatchSettings(None, 0.0)


def test_human_output_of_model_batching(warden: Warden, files: dict[str, Path]) -> None:
    warden.json("tenant", "create", "acme")
    warden.json("model", "push", "acme", "pets", files["dynamic"])
    result = warden("model", "batching", "acme", "pets:1", "--max-batch-size", "4", "--max-queue-delay-ms", "1.5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Batching of pets version 1: max batch 4, max queue delay 1.5 ms.\n"
    result = warden("model", "batching", "acme", "pets:1")
    assert result.stdout == "Batching of pets version 1: max batch server default, max queue delay server default.\n"


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["{dynamic}", "--max-batch-size", "0"], "invalid_argument", 2),
        (["{dynamic}", "--max-batch-size", "257"], "invalid_argument", 2),
        (["{dynamic}", "--max-queue-delay-ms", "-1"], "invalid_argument", 2),
        (["{dynamic}", "--max-queue-delay-ms", "1000.5"], "invalid_argument", 2),
        (["{dynamic}", "--max-queue-delay-ms", "nan"], "invalid_argument", 2),
        (["{dynamic}", "--max-queue-delay-ms", "inf"], "invalid_argument", 2),
        (["{fixed}", "--max-batch-size", "4"], "invalid_argument", 2),
    ],
)
def test_a_push_with_bad_batching_is_refused_and_stores_nothing(
    warden: Warden, files: dict[str, Path], args: list[str], code: str, status: int
) -> None:
    warden.json("tenant", "create", "acme")
    placeholders = {"{dynamic}": str(files["dynamic"]), "{fixed}": str(files["fixed"])}
    result = warden("model", "push", "acme", "pets", *(placeholders.get(a, a) for a in args))
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")
    assert warden.json("model", "list", "acme") == []
    with warden.services() as services:
        assert services.registry.blobs.digests() == set()


def test_a_fixed_batch_is_named_in_the_refusal(warden: Warden, files: dict[str, Path]) -> None:
    warden.json("tenant", "create", "acme")
    result = warden("model", "push", "acme", "solo", files["fixed"], "--max-batch-size", "2")
    assert result.exit_code == 2
    assert "batch dimension is fixed at 1" in one_error_line(result)
    warden.json("model", "push", "acme", "solo", files["fixed"])
    result = warden("model", "batching", "acme", "solo:1", "--max-batch-size", "2")
    assert result.exit_code == 2
    assert "batch dimension is fixed at 1" in one_error_line(result)
    assert batching_listed(warden) == {"solo": [(1, None, None)]}


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["acme", "pets"], "invalid_argument", 2),  # no version
        (["acme", "pets:"], "invalid_argument", 2),
        (["acme", "pets:x"], "invalid_argument", 2),
        (["acme", "pets:0"], "invalid_argument", 2),
        (["acme", "pets:1", "--max-batch-size", "0"], "invalid_argument", 2),
        (["acme", "pets:1", "--max-batch-size", "300"], "invalid_argument", 2),
        (["acme", "pets:1", "--max-queue-delay-ms", "-0.1"], "invalid_argument", 2),
        (["acme", "pets:1", "--max-queue-delay-ms", "nan"], "invalid_argument", 2),
        (["acme", "pets:1", "--max-queue-delay-ms", "5000"], "invalid_argument", 2),
        (["acme", "ghost:1", "--max-batch-size", "2"], "model_not_found", 1),
        (["acme", "pets:2", "--max-batch-size", "2"], "model_not_found", 1),
        (["ghost", "pets:1", "--max-batch-size", "2"], "tenant_not_found", 1),
        (["globex", "pets:1", "--max-batch-size", "2"], "model_not_found", 1),  # another tenant's model
    ],
)
def test_when_model_batching_fails_then_one_line_says_why_and_nothing_changes(
    warden: Warden, files: dict[str, Path], args: list[str], code: str, status: int
) -> None:
    warden.json("tenant", "create", "acme")
    warden.json("tenant", "create", "globex")
    warden.json("model", "push", "acme", "pets", files["dynamic"], "--max-batch-size", "4", "--max-queue-delay-ms", "3")
    result = warden("model", "batching", *args)
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")
    result = warden("model", "batching", *args, "--json")
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")
    assert batching_listed(warden) == {"pets": [(1, 4, 3.0)]}


@pytest.mark.parametrize("option", ["--max-batch-size", "--max-queue-delay-ms"])
def test_a_value_that_is_not_a_number_is_a_usage_error(warden: Warden, files: dict[str, Path], option: str) -> None:
    warden.json("tenant", "create", "acme")
    assert warden("model", "push", "acme", "pets", files["dynamic"], option, "soon").exit_code == 2
    warden.json("model", "push", "acme", "pets", files["dynamic"])
    assert warden("model", "batching", "acme", "pets:1", option, "soon").exit_code == 2
    assert batching_listed(warden) == {"pets": [(1, None, None)]}
