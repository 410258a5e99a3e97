"""``warden job run``: the option parsers, a run end to end through the command line, refusals as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Warden, one_error_line
from warden.cli.jobs import parse_duration, parse_env, parse_size
from warden.errors import InvalidArgument
from warden.jobs.sandbox import BwrapSandbox

PYTHON = "/usr/bin/python3"
needs_sandbox = pytest.mark.skipif(
    not BwrapSandbox().available() or not Path(PYTHON).exists(),
    reason=f"JOB CLI RUNS NOT TESTED: the bwrap sandbox is unavailable ({BwrapSandbox().unavailable_reason()})",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2G", 2 * 1024**3), ("512M", 512 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)), ("4096", 4096), ("64k", 65536)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size("--memory", text) == expected


@pytest.mark.parametrize(("text", "expected"), [("1h", 3600), ("30m", 1800), ("90s", 90), ("2d", 172800), ("5", 5)])
def test_durations(text: str, expected: float) -> None:
    assert parse_duration("--timeout", text) == expected


@pytest.mark.parametrize("text", ["", "two", "0", "-1G", "1X"])
def test_bad_sizes_and_durations_name_their_option(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^--memory: "):
        parse_size("--memory", text)
    with pytest.raises(InvalidArgument, match=r"^--timeout: "):
        parse_duration("--timeout", text)


def test_env_pairs_and_their_mistakes() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(InvalidArgument, match="use K=V"):
        parse_env(["NOEQUALS"])
    with pytest.raises(InvalidArgument, match="given twice"):
        parse_env(["A=1", "A=2"])


def approve(warden: Warden, data: Path) -> str:
    answer = warden.json("approval", "create", "--purpose", "fraud model", "--dataset", data)
    return str(answer["id"])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("amount\n1\n2\n", encoding="utf-8")
    return path


@needs_sandbox
def test_a_job_runs_through_the_command_line_and_prints_its_manifest(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)
    script = "open('/output/n.txt', 'w').write(str(len(open('/input/data').read().split())))"

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out",
        "--memory", "512M", "--timeout", "2m", "--json", "--", PYTHON, "-c", script,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["approval"] == approval
    assert [o["path"] for o in manifest["outputs"]] == ["n.txt"]
    assert (tmp_path / "out" / "n.txt").read_text() == "3"
    actions = [e["event"].get("action") for e in warden.json("audit", "query", "--kind", "admin")]
    assert {"job.start", "job.end"} <= set(actions)


@needs_sandbox
def test_the_command_exits_with_the_job_s_own_status(warden: Warden, data: Path, tmp_path: Path) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out",
        "--", PYTHON, "-c", "raise SystemExit(7)",
    )  # fmt: skip

    assert result.exit_code == 7
    assert "warden: job exited 7; 0 output files" in result.stderr


@needs_sandbox
def test_an_unknown_approval_is_one_error_line(warden: Warden, data: Path, tmp_path: Path) -> None:
    assert warden("init").exit_code == 0

    result = warden(
        "job", "run", "--approval", "apr_AAAAAAAAAAAAAAAA", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--", PYTHON, "-c", "pass",
    )  # fmt: skip

    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: approval_refused: ")
    assert not (tmp_path / "out").exists()
