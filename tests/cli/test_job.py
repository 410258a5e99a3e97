"""``warden job run``: the option parsers, a run end to end through the command line, refusals as one error line."""

from __future__ import annotations

import fcntl
import json
import shlex
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Warden, one_error_line
from warden.cli.jobs import parse_claims, parse_duration, parse_env, parse_size
from warden.errors import InvalidArgument
from warden.jobs.containers import Engine, gpu_run_args
from warden.jobs.gpu_driver import cdi_gpu_names
from warden.jobs.gpus import GpuUnavailable
from warden.jobs.kubernetes import approval_label
from warden.jobs.sandbox import BwrapSandbox
from warden.policy import Profile, check_docker_run, check_text

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


IMAGE = "registry.example/team/trainer:v2.9@sha256:" + "ab" * 32


def runs_used(warden: Warden, approval: str) -> int:
    with warden.services() as services:
        return services.approvals.get(approval).runs_used


def test_claim_pairs_and_their_mistakes() -> None:
    assert parse_claims(["data=fraud-data", "labels=l"]) == {"data": "fraud-data", "labels": "l"}
    for bad, needle in ((["data"], "NAME=CLAIM"), (["=c"], "NAME=CLAIM"), (["a=b", "a=c"], "given twice")):
        with pytest.raises(InvalidArgument, match=needle):
            parse_claims(bad)


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_a_container_dry_run_prints_a_command_that_passes_the_policy_check_and_spends_nothing(
    warden: Warden, data: Path, tmp_path: Path, engine: str
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out",
        "--backend", engine, "--image", IMAGE, "--dry-run", "--memory", "1G", "--pids", "64", "--cpus", "2",
        "--cpu-seconds", "600", "--env", "EPOCHS=3", "--", "python", "/app/train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    line = result.stdout.strip()
    argv = shlex.split(line)
    assert argv[:2] == [engine, "run"]
    assert argv[-3:] == [IMAGE, "python", "/app/train.py"]
    assert f"{data}:/input/data:ro" in argv
    assert check_docker_run(line, Profile.RESTRICTED) == []
    profile = Path(next(a for a in argv if a.startswith("seccomp=")).removeprefix("seccomp="))
    assert json.loads(profile.read_text())["defaultAction"] == "SCMP_ACT_ALLOW"
    assert not (tmp_path / "out").exists()
    assert runs_used(warden, approval) == 0


def test_a_container_dry_run_answers_json(warden: Warden, data: Path, tmp_path: Path) -> None:
    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--backend", "podman", "--image", IMAGE, "--dry-run", "--json", "--", "python", "train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["backend"] == "podman"
    assert answer["image"] == IMAGE
    assert shlex.split(answer["command"]) == answer["argv"]


def test_a_kubernetes_dry_run_writes_a_restricted_manifest_and_spends_nothing(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)
    out = tmp_path / "job.yaml"

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--backend", "kubernetes",
        "--image", IMAGE, "--dry-run", "--manifest-out", out, "--claim", "data=fraud-data",
        "--output-claim", "fraud-out", "--namespace", "training", "--timeout", "90m", "--", "python", "train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    manifest = yaml.safe_load(out.read_text())
    assert manifest["metadata"]["namespace"] == "training"
    assert manifest["spec"]["activeDeadlineSeconds"] == 5400
    volumes = manifest["spec"]["template"]["spec"]["volumes"]
    assert {"claimName": "fraud-data", "readOnly": True} in [v.get("persistentVolumeClaim") for v in volumes]
    assert check_text(out.read_text(), str(out), Profile.RESTRICTED)[1] == []
    assert runs_used(warden, approval) == 0


def test_a_kubernetes_manifest_is_issued_under_the_approval_and_audited(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--backend", "kubernetes",
        "--image", IMAGE, "--", "python", "train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["metadata"]["labels"]["warden.io/approval"] == approval_label(approval)
    assert manifest["metadata"]["annotations"]["warden.io/approval"] == approval
    assert manifest["metadata"]["annotations"]["warden.io/purpose"] == "fraud model"
    assert "kubectl apply -f -" in result.stderr
    assert runs_used(warden, approval) == 1
    events = warden.json("audit", "query", "--kind", "admin")
    issued = [e["event"] for e in events if e["event"].get("action") == "job.manifest"]
    assert len(issued) == 1
    assert issued[0]["details"]["image"] == IMAGE


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--backend", "podman"], "needs --image"),
        (["--backend", "kubernetes"], "needs --image"),
        (["--image", IMAGE], "--image applies to"),
        (["--dry-run"], "--dry-run applies to"),
        (["--backend", "docker", "--image", "pytorch_cuda:v2.9"], "image_refused: image 'pytorch_cuda:v2.9' is not"),
        (["--backend", "podman", "--image", IMAGE, "--dry-run", "--output", "{out}"], "must be an empty directory"),
    ],
)
def test_options_that_do_not_fit_are_one_error_line(
    warden: Warden, data: Path, tmp_path: Path, options: list[str], needle: str
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    options = [o.replace("{out}", str(tmp_path / "full")) for o in options]
    if "--output" not in options and "kubernetes" not in options:
        options += ["--output", str(tmp_path / "out")]

    result = warden("job", "run", "--approval", "apr_any", "--input", f"{data}:data", *options, "--", "true")

    assert result.exit_code != 0
    assert needle in one_error_line(result)


def test_an_image_off_the_allow_list_is_refused_even_in_a_dry_run(
    warden: Warden, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_JOB_IMAGE_ALLOWLIST", '["registry.example/other/*"]')

    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--backend", "podman", "--image", IMAGE, "--dry-run", "--", "true",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "not on the job image allow-list" in one_error_line(result)


@needs_sandbox
def test_the_job_s_control_sequences_are_escaped_on_the_terminal_and_kept_raw_in_its_log(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    # Found by a hostile job: its stdout retitled the operator's terminal and cleared the screen (OSC, CSI).
    assert warden("init").exit_code == 0
    approval = approve(warden, data)
    script = r"import sys; sys.stdout.write('\x1b]0;owned\x07\x1b[2Jok\rFAKE\n'); sys.stderr.write('\x9b31mred\n')"

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out",
        "--", PYTHON, "-c", script,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\\x1b]0;owned\\x07\\x1b[2Jok\\rFAKE\n"
    assert "\\x9b31mred\n" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    record = tmp_path / "out.job"
    assert (record / "stdout.log").read_bytes() == b"\x1b]0;owned\x07\x1b[2Jok\rFAKE\n"


@needs_sandbox
@pytest.mark.parametrize(
    ("options", "script", "limit"),
    [
        (["--max-output", "1M"], "open('/output/big', 'wb').write(b'x' * (8 << 20))", "output_bytes"),
        (["--max-log", "64k"], "import time; print('y' * (1 << 20), flush=True); time.sleep(60)", "log_bytes"),
    ],
)  # fmt: skip
def test_a_job_past_max_output_or_max_log_exits_122_with_limit_exceeded(
    warden: Warden, data: Path, tmp_path: Path, options: list[str], script: str, limit: str
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out", *options,
        "--json", "--", PYTHON, "-c", script,
    )  # fmt: skip

    assert result.exit_code == 122, result.stderr
    manifest = json.loads(result.stdout)
    assert (manifest["status"], manifest["limit_exceeded"]) == ("limit_exceeded", limit)
    ends = [e["event"] for e in warden.json("audit", "query", "--kind", "admin") if e["event"]["action"] == "job.end"]
    assert ends[0]["details"]["status"] == "limit_exceeded"


def test_the_size_limits_have_settings_defaults_and_the_option_grammar(
    warden: Warden, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_JOB_MAX_OUTPUT_BYTES", str(3 * 1024**2))
    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--backend", "docker", "--image", IMAGE, "--dry-run", "--json", "--env", "API_TOKEN=s3cret", "--", "true",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    argv = json.loads(result.stdout)["argv"]
    assert f"fsize={3 * 1024**2}:{3 * 1024**2}" in argv
    assert "s3cret" not in result.stdout
    assert argv[argv.index("API_TOKEN") - 1] == "--env"  # the printed command takes the value from its caller

    bad = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--max-log", "lots", "--", "true",
    )  # fmt: skip
    assert bad.exit_code != 0
    assert "--max-log: 'lots' is not a size" in one_error_line(bad)


# --- GPUs ---------------------------------------------------------------------------------------------------------


def test_a_docker_dry_run_with_gpus_shows_the_devices_it_would_get_and_passes_the_policy_check(
    warden: Warden, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_JOB_GPUS", "0,1,2")
    try:  # whatever this host's CDI specs say (none on most machines: then docker's --gpus)
        expected = gpu_run_args(Engine.DOCKER, ["0", "1"], cdi_gpu_names())
    except GpuUnavailable as exc:
        pytest.skip(f"this host's CDI spec cannot give GPUs 0 and 1: {exc}")

    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--backend", "docker", "--image", IMAGE, "--dry-run", "--gpus", "2", "--json", "--", "python", "train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["gpus"] == ["0", "1"]
    argv = answer["argv"]
    at = argv.index(expected[0])
    assert argv[at : at + len(expected)] == expected
    assert check_docker_run(answer["command"], Profile.RESTRICTED) == []


def test_a_kubernetes_job_with_gpus_asks_the_device_plugin_and_stays_restricted(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "job.yaml"

    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--backend", "kubernetes", "--image", IMAGE,
        "--dry-run", "--manifest-out", out, "--gpus", "1", "--gpu-resource", "nvidia.com/mig-1g.5gb", "--", "true",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    (container,) = yaml.safe_load(out.read_text())["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == 1
    assert check_text(out.read_text(), str(out), Profile.RESTRICTED)[1] == []


def test_an_issued_kubernetes_job_s_audit_record_says_how_many_gpus_of_what(
    warden: Warden, data: Path, tmp_path: Path
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--backend", "kubernetes",
        "--image", IMAGE, "--gpus", "2", "--", "python", "train.py",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    events = warden.json("audit", "query", "--kind", "admin")
    [issued] = [e["event"] for e in events if e["event"].get("action") == "job.manifest"]
    assert issued["details"]["gpus"] == "2 nvidia.com/gpu"


@pytest.mark.parametrize(
    ("gpus", "setting", "needle"),
    [
        ("1", None, "gpus_unsatisfiable: the job asks for 1 GPU(s) and this machine lends 0 to jobs (WARDEN_JOB_GPUS"),
        ("3", "0,1", "gpus_unsatisfiable: the job asks for 3 GPU(s) and this machine lends 2 to jobs"),
        ("1", "0,0", "job_gpus: Value error, duplicate: WARDEN_JOB_GPUS entry '0'"),
    ],
)
def test_a_job_asking_more_gpus_than_the_machine_lends_is_one_error_line_and_spends_no_run(
    warden: Warden, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: str, setting: str | None,
    needle: str,
) -> None:  # fmt: skip
    assert warden("init").exit_code == 0
    approval = approve(warden, data)
    if setting is not None:
        monkeypatch.setenv("WARDEN_JOB_GPUS", setting)

    result = warden(
        "job", "run", "--approval", approval, "--input", f"{data}:data", "--output", tmp_path / "out",
        "--gpus", gpus, "--", PYTHON, "-c", "pass",
    )  # fmt: skip

    assert result.exit_code != 0
    assert needle in one_error_line(result)
    monkeypatch.delenv("WARDEN_JOB_GPUS", raising=False)  # a bad list would stop the check below too
    assert runs_used(warden, approval) == 0


@needs_sandbox
def test_gpus_other_jobs_hold_or_the_sandbox_cannot_reach_are_refused_without_spending_a_run(
    warden: Warden, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert warden("init").exit_code == 0
    approval = approve(warden, data)
    command = ["job", "run", "--approval", approval, "--input", f"{data}:data", "--gpus", "1", "--", PYTHON, "-c", ""]
    monkeypatch.setenv("WARDEN_JOB_GPUS", "254")  # no machine has a GPU of that index

    unreachable = warden(*command[:6], "--output", tmp_path / "a", *command[6:])

    assert "gpu_unavailable: unresolved: GPU 254" in one_error_line(unreachable)
    locks = warden.data_dir / "gpu-leases"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / "gpu-254.lock").open("w") as held:  # another warden job run holds the device
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = warden(*command[:6], "--output", tmp_path / "b", *command[6:])
    assert "gpus_busy: the job asks for 1 GPU(s); 0 of this machine's 1 are free" in one_error_line(busy)
    assert runs_used(warden, approval) == 0


def test_the_gpu_resource_is_an_option_of_kubernetes_only(warden: Warden, data: Path, tmp_path: Path) -> None:
    result = warden(
        "job", "run", "--approval", "apr_any", "--input", f"{data}:data", "--output", tmp_path / "out",
        "--gpu-resource", "nvidia.com/gpu", "--", "true",
    )  # fmt: skip
    assert "--gpu-resource applies to the kubernetes backend" in one_error_line(result)
