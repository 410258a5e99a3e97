"""``warden model …`` end to end: push, versions, aliases, removal, blob collection, and refused uploads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import Warden, graph, one_error_line
from warden.registry import sha256_hex


@pytest.fixture
def model_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two different valid detection models on disk."""
    first, second = tmp_path / "pets-v1.onnx", tmp_path / "pets-v2.onnx"
    first.write_bytes(graph(0.9))
    second.write_bytes(graph(0.8))
    return first, second


def test_the_model_lifecycle_with_json_output(warden_on_each_backend: Warden, model_files: tuple[Path, Path]) -> None:
    warden = warden_on_each_backend
    first, second = model_files
    sha1, sha2 = sha256_hex(first.read_bytes()), sha256_hex(second.read_bytes())
    warden.json("tenant", "create", "acme")
    warden.json("tenant", "create", "globex")
    assert warden.json("model", "list", "acme") == []

    pushed = warden.json("model", "push", "acme", "pets", first, "--alias", "stable")
    assert pushed == {"name": "pets", "version": 1, "sha256": sha1}
    pushed = warden.json("model", "push", "acme", "pets", second, "--alias", "canary", "--canary-weight", "10")
    assert pushed == {"name": "pets", "version": 2, "sha256": sha2}

    [listed] = warden.json("model", "list", "acme")
    assert list(listed) == ["name", "versions", "aliases"]
    assert listed["name"] == "pets"
    fields = ["version", "sha256", "size_bytes", "created_at", "max_batch_size", "max_queue_delay_ms"]
    fields += ["measured_run_ms", "run_cap_ms", "effective_run_cap_ms", "run_cap_source"]
    assert [list(v) for v in listed["versions"]] == [fields] * 2
    assert [(v["version"], v["sha256"], v["size_bytes"]) for v in listed["versions"]] == [
        (1, sha1, first.stat().st_size),
        (2, sha2, second.stat().st_size),
    ]
    for v in listed["versions"]:
        created = datetime.fromisoformat(v["created_at"])
        assert created.utcoffset() == timedelta(0)
        assert datetime.now(UTC) - created < timedelta(minutes=1)
    assert listed["aliases"] == {"canary": {"version": 2, "weight": 10}, "stable": {"version": 1, "weight": 0}}
    assert warden.json("model", "list", "globex") == []

    assert warden.json("model", "rm", "acme", "pets:1") == {"name": "pets", "version": 1, "removed": True}
    [listed] = warden.json("model", "list", "acme")
    assert [v["version"] for v in listed["versions"]] == [2]
    assert listed["aliases"] == {"canary": {"version": 2, "weight": 10}}
    with warden.services() as services:
        assert services.registry.blobs.digests() == {sha2}
        assert services.registry.resolve(services.tenants.tenant_id("acme"), "pets").version == 2

    assert warden.json("model", "push", "acme", "pets", first)["version"] == 3  # numbers are never reused
    assert warden.json("model", "push", "globex", "shared", first)["sha256"] == sha1
    assert warden.json("model", "rm", "acme", "pets") == {"name": "pets", "version": None, "removed": True}
    assert warden.json("model", "list", "acme") == []
    with warden.services() as services:
        assert services.registry.blobs.digests() == {sha1}  # still used by globex

    assert warden.json("tenant", "delete", "globex", "--yes")["blobs_removed"] == 1
    with warden.services() as services:
        assert services.registry.blobs.digests() == set()


def test_when_a_tenant_is_deleted_then_its_models_and_their_blobs_go(
    warden: Warden, model_files: tuple[Path, Path]
) -> None:
    warden.json("tenant", "create", "acme")
    for path in model_files:
        warden.json("model", "push", "acme", "pets", path)
    assert warden.json("tenant", "delete", "acme", "--yes") == {"name": "acme", "deleted": True, "blobs_removed": 2}
    with warden.services() as services:
        assert services.registry.blobs.digests() == set()
    warden.json("tenant", "create", "acme")
    assert warden.json("model", "list", "acme") == []


def test_human_output_of_push_and_list(warden: Warden, model_files: tuple[Path, Path]) -> None:
    first, second = model_files
    warden.json("tenant", "create", "acme")
    pushed = warden("model", "push", "acme", "pets", first, "--alias", "stable")
    assert pushed.exit_code == 0, pushed.stderr
    assert pushed.stdout == f"Pushed pets version 1, now stable (sha256 {sha256_hex(first.read_bytes())}).\n"
    warden("model", "push", "acme", "pets", second, "--alias", "canary", "--canary-weight", "25")
    table = warden("model", "list", "acme").stdout
    assert "1 models of tenant 'acme'" in table
    assert "stable" in table
    assert "canary (25%)" in table
    assert sha256_hex(second.read_bytes())[:12] in table
    assert warden("model", "rm", "acme", "pets:2").stdout == "Removed model pets (version 2).\n"


@pytest.fixture
def uploads(tmp_path: Path, model_files: tuple[Path, Path]) -> dict[str, str]:
    """Files to push, by placeholder: a valid model, a text file, an empty file."""
    (tmp_path / "notes.onnx").write_text("not a model")
    (tmp_path / "empty.onnx").write_bytes(b"")
    return {
        "{model}": str(model_files[0]),
        "{text}": str(tmp_path / "notes.onnx"),
        "{empty}": str(tmp_path / "empty.onnx"),
    }


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (["ghost", "pets", "{model}"], "tenant_not_found", 1),
        (["acme", "Bad!", "{model}"], "invalid_argument", 2),
        (["acme", "pets", "{model}", "--alias", "beta"], "invalid_argument", 2),
        (["acme", "pets", "{model}", "--alias", "canary"], "invalid_argument", 2),
        (["acme", "pets", "{model}", "--canary-weight", "5"], "invalid_argument", 2),
        (["acme", "pets", "{model}", "--alias", "canary", "--canary-weight", "101"], "invalid_argument", 2),
        (["acme", "pets", "{text}"], "invalid_model", 1),
        (["acme", "pets", "{empty}"], "invalid_model", 1),
    ],
)
def test_when_a_push_is_refused_then_one_line_says_why_and_no_version_is_stored(
    warden: Warden, uploads: dict[str, str], args: list[str], code: str, status: int
) -> None:
    warden.json("tenant", "create", "acme")
    result = warden("model", "push", *(uploads.get(arg, arg) for arg in args))
    assert result.exit_code == status
    assert one_error_line(result).startswith(f"warden: error: {code}: ")
    assert warden.json("model", "list", "acme") == []


@pytest.mark.parametrize(
    "args",
    [
        ["{text}"],
        ["{model}", "--alias", "beta"],
        # Regression: the blob was stored before a new canary without a weight was refused.
        ["{model}", "--alias", "canary"],
    ],
)
def test_when_a_push_is_refused_then_no_blob_is_left_behind(
    warden: Warden, uploads: dict[str, str], args: list[str]
) -> None:
    warden.json("tenant", "create", "acme")
    assert warden("model", "push", "acme", "pets", *(uploads.get(arg, arg) for arg in args)).exit_code != 0
    with warden.services() as services:
        assert services.registry.blobs.digests() == set()


@pytest.mark.parametrize(("name", "reason"), [("missing.onnx", "No such file or directory"), (".", "Is a directory")])
def test_when_the_model_path_cannot_be_read_then_the_error_names_it(
    warden: Warden, tmp_path: Path, name: str, reason: str
) -> None:
    warden.json("tenant", "create", "acme")
    path = tmp_path / name
    result = warden("model", "push", "acme", "pets", path)
    assert result.exit_code == 2
    assert one_error_line(result) == f"warden: error: invalid_argument: cannot read model file {path}: {reason}"


def test_when_the_model_file_is_over_the_limit_then_it_is_refused_before_reading(
    warden: Warden, model_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    warden.json("tenant", "create", "acme")
    monkeypatch.setenv("WARDEN_MAX_MODEL_BYTES", "100")
    result = warden("model", "push", "acme", "pets", model_files[0])
    assert result.exit_code == 1
    size = model_files[0].stat().st_size
    assert one_error_line(result) == (
        f"warden: error: payload_too_large: {model_files[0]} has {size} bytes; "
        "the limit is 100 (WARDEN_MAX_MODEL_BYTES)"
    )
