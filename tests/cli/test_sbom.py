"""``warden sbom``: writing the environment's CycloneDX SBOM, and the offline OSV check's exit statuses and output."""

from __future__ import annotations

import hashlib
import json
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from typer.testing import CliRunner, Result

from tests.cli.conftest import Warden, graph, one_error_line
from warden.cli.sbom import sbom

app = typer.Typer()


@app.callback()
def _root(data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None) -> None:
    """Stands in for the ``warden`` root, whose ``--data-dir`` the command reads."""


app.command("sbom")(sbom)

FASTAPI = metadata.version("fastapi")
HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"


def run(warden: Warden, *args: str | Path) -> Result:
    return CliRunner().invoke(app, ["--data-dir", str(warden.data_dir), "sbom", *map(str, args)])


def osv_record(osv_id: str, package: str, **fields: Any) -> dict[str, Any]:
    """An OSV record affecting every ``package`` version before 9999."""
    events = [{"introduced": "0"}, {"fixed": "9999"}]
    affected = [
        {"package": {"ecosystem": "PyPI", "name": package}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}
    ]
    return {"id": osv_id, "modified": "2026-01-01T00:00:00Z", "affected": affected, **fields}


def osv_zip(path: Path, *records: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


@pytest.fixture
def high_in_fastapi(tmp_path: Path) -> Path:
    """An export with one high-severity record for every installed FastAPI (spelt as PyPI's name allows)."""
    record = osv_record(
        "GHSA-test-fast-api0",
        "FastAPI",
        aliases=["CVE-2026-1234"],
        summary="Test advisory",
        severity=[{"type": "CVSS_V3", "score": HIGH}],
    )
    return osv_zip(tmp_path / "all.zip", record)


def test_out_writes_a_valid_cyclonedx_json_sbom_of_this_environment(warden: Warden, tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = run(warden, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Wrote {out}: CycloneDX 1.6 json, ")
    text = out.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    fastapi = next(c for c in json.loads(text)["components"] if c["name"] == "fastapi")
    assert fastapi["purl"] == f"pkg:pypi/fastapi@{FASTAPI}"
    assert not list(tmp_path.glob(".*partial"))


def test_out_with_json_prints_one_line_describing_the_file(warden: Warden, tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    result = run(warden, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    document = json.loads(out.read_text())
    assert summary == {
        "out": str(out),
        "format": "json",
        "spec_version": "1.6",
        "serial_number": document["serialNumber"],
        "packages": len(document["components"]),
        "models": 0,
    }


def test_format_xml_writes_cyclonedx_xml(warden: Warden, tmp_path: Path) -> None:
    out = tmp_path / "sbom.xml"
    assert run(warden, "--out", out, "--format", "xml").exit_code == 0
    text = out.read_text()
    assert text.startswith("<?xml")
    assert 'xmlns="http://cyclonedx.org/schema/bom/1.6"' in text
    assert f"<purl>pkg:pypi/fastapi@{FASTAPI}</purl>" in text


def test_models_adds_each_registered_model_version_with_its_sha256(warden: Warden, tmp_path: Path) -> None:
    model = graph()
    with warden.services() as services:
        tenant = services.tenants.create_tenant("acme")
        services.registry.push(services.tenants.tenant_id(tenant.name), "people", model)
    out = tmp_path / "sbom.json"
    result = run(warden, "--out", out, "--models", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["models"] == 1
    [component] = [c for c in json.loads(out.read_text())["components"] if c["type"] == "machine-learning-model"]
    assert (component["name"], component["version"]) == ("acme/people", "1")
    assert component["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(model).hexdigest()}]


def test_a_vulnerable_installed_package_fails_the_check_with_exit_1_and_one_line_per_match(
    warden: Warden, high_in_fastapi: Path
) -> None:
    result = run(warden, "--check-vulns", high_in_fastapi)
    assert result.exit_code == 1, result.stderr
    first, summary = result.stdout.splitlines()
    assert first == f"GHSA-test-fast-api0 (CVE-2026-1234) fastapi {FASTAPI} [high, fixed in 9999]: Test advisory"
    assert summary.startswith("1 vulnerabilities at or above high in ")


def test_json_lists_the_matches_at_or_above_the_threshold(warden: Warden, high_in_fastapi: Path) -> None:
    result = run(warden, "--check-vulns", high_in_fastapi, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["threshold"] == "high"
    assert report["records"] == 1
    assert report["below_threshold"] == 0
    assert report["packages"] == len({d.metadata["Name"].lower() for d in metadata.distributions()})
    assert report["matches"] == [
        {
            "id": "GHSA-test-fast-api0",
            "aliases": ["CVE-2026-1234"],
            "package": "fastapi",
            "version": FASTAPI,
            "severity": "high",
            "fixed": "9999",
            "summary": "Test advisory",
        }
    ]


@pytest.mark.parametrize(
    ("severity", "threshold", "exit_code"),
    [
        ({"severity": [{"type": "CVSS_V3", "score": HIGH}]}, "high", 1),
        ({"severity": [{"type": "CVSS_V3", "score": HIGH}]}, "critical", 0),
        ({"database_specific": {"severity": "MODERATE"}}, "medium", 1),
        ({"database_specific": {"severity": "MODERATE"}}, "high", 0),
        ({"database_specific": {"severity": "LOW"}}, "low", 1),
        ({}, "critical", 1),  # unknown severity meets every threshold
    ],
)
def test_the_exit_status_follows_the_severity_threshold(
    warden: Warden, tmp_path: Path, severity: dict[str, Any], threshold: str, exit_code: int
) -> None:
    export = osv_zip(tmp_path / "all.zip", osv_record("PYSEC-2026-1", "fastapi", **severity))
    result = run(warden, "--check-vulns", export, "--severity", threshold, "--json")
    assert result.exit_code == exit_code, result.stderr
    report = json.loads(result.stdout)
    assert (len(report["matches"]), report["below_threshold"]) == ((1, 0) if exit_code else (0, 1))


def test_below_the_threshold_the_check_passes_and_says_how_many_it_did_not_show(
    warden: Warden, high_in_fastapi: Path
) -> None:
    result = run(warden, "--check-vulns", high_in_fastapi, "--severity", "critical")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].endswith("(1 OSV records; 1 below it not shown)")


def test_sbom_checks_the_components_of_a_written_sbom(warden: Warden, tmp_path: Path, high_in_fastapi: Path) -> None:
    out = tmp_path / "sbom.json"
    assert run(warden, "--out", out).exit_code == 0
    result = run(warden, "--check-vulns", high_in_fastapi, "--sbom", out, "--json")
    assert result.exit_code == 1
    assert [m["id"] for m in json.loads(result.stdout)["matches"]] == ["GHSA-test-fast-api0"]


def test_a_record_for_a_version_not_installed_passes(warden: Warden, tmp_path: Path) -> None:
    record = osv_record("PYSEC-2026-2", "fastapi", database_specific={"severity": "CRITICAL"})
    record["affected"][0]["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.1"}]}]
    result = run(warden, "--check-vulns", osv_zip(tmp_path / "all.zip", record))
    assert result.exit_code == 0
    assert result.stdout.startswith("0 vulnerabilities at or above high in ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --out FILE"),
        (("--out", "x.json", "--check-vulns", "osv.json"), "give either --out FILE"),
        (("--check-vulns", "osv.json", "--models"), "--models adds the registered models"),
        (("--out", "x.json", "--sbom", "sbom.json"), "--sbom names the SBOM"),
    ],
)
def test_a_wrong_combination_of_options_is_one_error_line_and_exit_2(
    warden: Warden, args: tuple[str, ...], message: str
) -> None:
    result = run(warden, *args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"warden: error: invalid_argument: {message}")


def test_a_missing_osv_export_is_invalid_argument_and_exit_2(warden: Warden, tmp_path: Path) -> None:
    result = run(warden, "--check-vulns", tmp_path / "missing.zip")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("warden: error: invalid_argument: cannot read the OSV export")


def test_an_export_that_is_not_osv_is_unsupported_file_and_exit_2(warden: Warden, tmp_path: Path) -> None:
    export = tmp_path / "osv.json"
    export.write_text('{"affected": []}')
    result = run(warden, "--check-vulns", export)
    assert result.exit_code == 2
    assert (
        one_error_line(result)
        == f"warden: error: unsupported_file: {export}: not an OSV record (an object with a string 'id')"
    )


def test_an_sbom_that_cannot_be_written_is_io_error_and_exit_2(warden: Warden, tmp_path: Path) -> None:
    result = run(warden, "--out", tmp_path / "no-such-dir" / "sbom.json")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("warden: error: io_error: ")
