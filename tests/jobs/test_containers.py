"""The podman and docker backends: the command they build, its seccomp profile, and a run through an engine.

No engine daemon is needed for most of this: the command is checked with ``warden policy check``'s own API, and
the run is driven through a small fake engine script. A real run needs ``WARDEN_TEST_IMAGE`` (an image pinned by
digest with ``/bin/sh``) and a working podman or docker; without them that test skips and says so.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from warden.errors import InvalidArgument, SandboxUnavailable
from warden.jobs import seccomp
from warden.jobs.admission import Input
from warden.jobs.containers import (
    ContainerJob,
    ContainerSandbox,
    Engine,
    build_command,
    gpu_run_args,
    prepare_output_dir,
    quoted,
    rootless_podman,
    seccomp_profile,
    write_seccomp_profile,
)
from warden.jobs.gpus import GpuDevice, GpuKind, GpuUnavailable, ReservedGpuEnv
from warden.jobs.images import ImageRefused, parse_image
from warden.jobs.runner import JobRequest, run_job
from warden.jobs.sandbox import SandboxSpec
from warden.policy import Profile, Severity, check_docker_run
from warden.services import Services

TMPFS = f"/tmp:rw,noexec,nosuid,nodev,size={256 * 1024**2}"  # noqa: S108 - the container's own /tmp
IMAGE = parse_image("registry.example/team/trainer:v2.9@sha256:" + "ab" * 32)


def container_job(tmp_path: Path, **changes: object) -> ContainerJob:
    fields: dict[str, object] = {
        "engine": Engine.PODMAN,
        "image": IMAGE,
        "command": ["python", "/app/train.py", "--epochs", "3"],
        "output_dir": tmp_path / "out",
        "seccomp_profile": tmp_path / "seccomp.json",
        "inputs": [(tmp_path / "data.csv", "data"), (tmp_path / "labels", "labels")],
        "env": {"EPOCHS": "3"},
        "name": "warden-job-test",
    }
    return ContainerJob(**{**fields, **changes})


def test_the_command_holds_every_hardening_flag_in_order(tmp_path: Path) -> None:
    argv = build_command(container_job(tmp_path, cpu_seconds=600, cpus=1.5, memory_bytes=1024**3, pids=64))

    expected = [
        "podman", "run", "--rm", "--name", "warden-job-test", "--network", "none", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--security-opt", f"seccomp={tmp_path / 'seccomp.json'}",
        "--read-only", "--tmpfs", TMPFS, "--user", "65534:65534",
        "--memory", str(1024**3), "--memory-swap", str(1024**3), "--pids-limit", "64", "--cpus", "1.5",
        "--ulimit", "cpu=600:600",
        "--volume", f"{tmp_path / 'data.csv'}:/input/data:ro", "--volume", f"{tmp_path / 'labels'}:/input/labels:ro",
        "--volume", f"{tmp_path / 'out'}:/output:rw", "--workdir", "/output",
        "--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--env", "HOME=/tmp", "--env", "LANG=C.UTF-8",
        "--env", "NVIDIA_VISIBLE_DEVICES=void", "--env", "EPOCHS",
        IMAGE.pinned, "python", "/app/train.py", "--epochs", "3",
    ]  # fmt: skip
    assert argv == expected


def test_environment_values_travel_in_a_file_and_the_output_limit_bounds_each_file(tmp_path: Path) -> None:
    # --env K=V put the value on the engine's command line, where ps shows it to every user of the machine.
    job = container_job(tmp_path, env={"API_TOKEN": "s3cret"}, env_file=tmp_path / "job.env", max_output_bytes=4096)
    argv = build_command(job)

    assert "s3cret" not in " ".join(argv)
    assert argv[argv.index("--env-file") + 1] == str(tmp_path / "job.env")
    assert "fsize=4096:4096" in argv
    assert check_docker_run(quoted(argv), Profile.RESTRICTED) == []


def test_a_value_an_env_file_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="API_TOKEN: a container env file cannot hold a line break"):
        container_job(tmp_path, env={"API_TOKEN": "a\nB=b"})


def test_optional_limits_are_left_out_and_the_executable_can_be_named(tmp_path: Path) -> None:
    argv = build_command(container_job(tmp_path, engine=Engine.DOCKER, memory_bytes=None, pids=None), "/opt/docker")
    assert argv[:2] == ["/opt/docker", "run"]
    for flag in ("--memory", "--memory-swap", "--pids-limit", "--cpus", "--ulimit"):
        assert flag not in argv


def test_rootless_podman_maps_the_caller_to_the_job_s_uid_and_docker_never_does(tmp_path: Path) -> None:
    podman = build_command(container_job(tmp_path, keep_id=True))
    assert podman[podman.index("--userns") + 1] == "keep-id:uid=65534,gid=65534"
    assert "--userns" not in build_command(container_job(tmp_path, engine=Engine.DOCKER, keep_id=True))
    assert rootless_podman(Engine.PODMAN) == (os.geteuid() != 0)
    assert not rootless_podman(Engine.DOCKER)


def test_the_output_directory_is_made_writable_for_the_job_s_uid(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    prepare_output_dir(container_job(tmp_path, engine=Engine.DOCKER))
    status = (tmp_path / "out").stat()
    if os.geteuid() == 0:
        assert (status.st_uid, status.st_gid) == (65534, 65534)
    else:
        assert stat.S_IMODE(status.st_mode) == 0o777


MIG = "MIG-aaaaaaaa-0000-4000-8000-000000000000"
CDI = frozenset({"0", "1", "all", MIG})


@pytest.mark.parametrize(
    ("engine", "gpus", "cdi", "expected"),
    [
        (Engine.PODMAN, ["0"], CDI, ["--device", "nvidia.com/gpu=0"]),
        (Engine.DOCKER, ["0", "1"], CDI, ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"]),
        (Engine.DOCKER, [MIG], CDI, ["--device", f"nvidia.com/gpu={MIG}"]),
        (Engine.DOCKER, ["1"], None, ["--gpus", "device=1"]),
        (Engine.DOCKER, ["0", "1"], None, ["--gpus", '"device=0,1"']),  # docker splits an unquoted list at ','
        (Engine.DOCKER, [MIG], None, ["--gpus", f"device={MIG}"]),
        (Engine.PODMAN, [], None, []),
    ],
)
def test_the_gpu_options_are_cdi_devices_where_a_spec_exists_else_docker_s_gpus(
    engine: Engine, gpus: list[str], cdi: frozenset[str] | None, expected: list[str]
) -> None:
    assert gpu_run_args(engine, gpus, cdi) == expected


@pytest.mark.parametrize(
    ("engine", "gpus", "cdi", "needle"),
    [
        (Engine.PODMAN, ["0"], None, "no_cdi: podman reaches NVIDIA GPUs only through CDI"),
        (Engine.DOCKER, ["2"], CDI, "not_in_cdi: the nvidia.com/gpu CDI spec names no device 2"),
        (Engine.PODMAN, ["GPU-11111111-1111-4111-8111-111111111111"], frozenset(), "names no device GPU-1111"),
    ],
)
def test_a_gpu_the_engine_cannot_be_given_is_refused(
    engine: Engine, gpus: list[str], cdi: frozenset[str] | None, needle: str
) -> None:
    with pytest.raises(GpuUnavailable, match=needle) as caught:
        gpu_run_args(engine, gpus, cdi)
    assert caught.value.code == "gpu_unavailable"


@pytest.mark.parametrize(("gpus", "cdi", "void"), [([], None, True), (["0"], CDI, True), (["0"], None, False)])
def test_nvidia_visible_devices_is_void_unless_docker_s_gpus_sets_it(
    tmp_path: Path, gpus: list[str], cdi: frozenset[str] | None, void: bool
) -> None:
    argv = build_command(container_job(tmp_path, engine=Engine.DOCKER, gpus=gpus, cdi_names=cdi))
    assert ("NVIDIA_VISIBLE_DEVICES=void" in argv) is void
    assert check_docker_run(quoted(argv), Profile.RESTRICTED) == []
    assert "--privileged" not in argv
    assert not [a for a in argv if a.startswith("/dev")]  # no host device but the leased ones, by name


def test_a_job_may_not_pick_its_own_gpus_through_its_environment(tmp_path: Path) -> None:
    with pytest.raises(ReservedGpuEnv, match="NVIDIA_VISIBLE_DEVICES"):
        container_job(tmp_path, env={"NVIDIA_VISIBLE_DEVICES": "all"})


@pytest.mark.parametrize("engine", list(Engine))
@pytest.mark.parametrize("keep_id", [False, True])
@pytest.mark.parametrize("profile", list(Profile))
def test_the_printed_command_passes_the_policy_check_with_no_finding(
    tmp_path: Path, engine: Engine, keep_id: bool, profile: Profile
) -> None:
    line = quoted(build_command(container_job(tmp_path, engine=engine, cpu_seconds=60, cpus=2, keep_id=keep_id)))
    assert check_docker_run(line, profile) == []


def test_the_policy_check_reads_the_image_and_a_command_that_looks_like_options(tmp_path: Path) -> None:
    line = quoted(build_command(container_job(tmp_path, command=["--privileged", "-v", "/:/host"])))
    assert check_docker_run(line, Profile.RESTRICTED) == []  # after the image: the job's arguments, not options


def test_without_limits_the_policy_check_reports_them(tmp_path: Path) -> None:
    line = quoted(build_command(container_job(tmp_path, memory_bytes=None, pids=None)))
    findings = check_docker_run(line, Profile.RESTRICTED)
    assert {f.rule_id for f in findings if f.severity is Severity.ERROR} <= {"memory-limit", "pids-limit"}
    assert {f.rule_id for f in findings} == {"memory-limit", "pids-limit"}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"command": []}, "needs a command"),
        ({"uid": 0}, "unprivileged"),
        ({"gid": 0}, "unprivileged"),
        ({"memory_bytes": 0}, "memory limit"),
        ({"pids": -1}, "pids limit"),
        ({"cpus": 0.0}, "--cpus"),
        ({"output_dir": Path("/data/a:b")}, "cannot be mounted"),
        ({"inputs": [(Path("/data/x,ro"), "x")]}, "cannot be mounted"),
    ],
)
def test_a_job_that_cannot_be_expressed_safely_is_refused(
    tmp_path: Path, changes: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        container_job(tmp_path, **changes)


def rules_for(profile: dict[str, object], name: str) -> list[dict[str, object]]:
    syscalls = profile["syscalls"]
    assert isinstance(syscalls, list)
    return [rule for rule in syscalls if name in rule["names"]]


def test_the_seccomp_profile_is_the_sandbox_s_denylist_in_the_engines_format() -> None:
    profile = seccomp_profile("x86_64")

    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    for names in seccomp.DENIED.values():
        for name in names:
            assert rules_for(profile, name) == [
                {"names": rules_for(profile, name)[0]["names"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
            ]
    assert rules_for(profile, "socket") == [
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "args": [{"index": 0, "value": socket.AF_UNIX, "op": "SCMP_CMP_NE"}],
        }
    ]
    clone_flags = {rule["args"][0]["value"] for rule in rules_for(profile, "clone")}  # type: ignore[index]
    assert clone_flags == set(seccomp.CLONE_NAMESPACE_FLAGS.values())
    for name in seccomp.NOT_IMPLEMENTED:
        assert [rule["errnoRet"] for rule in rules_for(profile, name)] == [errno.ENOSYS]
    for name, position in seccomp.SET_ID_MODE_ARGUMENT.items():
        conditions = [rule["args"] for rule in rules_for(profile, name)]
        assert conditions == [
            [{"index": position, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}] for bit in (0o4000, 0o2000)
        ]


def test_the_profile_names_the_native_architecture_only() -> None:
    assert seccomp_profile("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64"]
    with pytest.raises(SandboxUnavailable, match="no seccomp architecture"):
        seccomp_profile("sparc64")


def test_the_profile_file_is_named_by_its_content_and_written_once(tmp_path: Path) -> None:
    first = write_seccomp_profile(tmp_path / "seccomp")
    modified = first.stat().st_mtime_ns
    second = write_seccomp_profile(tmp_path / "seccomp")

    assert first == second
    assert second.stat().st_mtime_ns == modified
    assert json.loads(first.read_text()) == seccomp_profile()


FAKE_ENGINE = """#!/bin/sh
# A stand-in for podman: 'info' succeeds, 'kill' records its argument, 'run' prints its arguments and obeys
# FAKE_BEHAVIOUR (exit:N, sleep, oom).
case "$1" in
  info) exit 0 ;;
  kill) echo "$2" > "$(dirname "$0")/killed"; kill "$(cat "$(dirname "$0")/pid")" 2>/dev/null; exit 0 ;;
esac
echo $$ > "$(dirname "$0")/pid"
printf '%s\\n' "$@"
echo "to stderr" >&2
case "$FAKE_BEHAVIOUR" in
  exit:*) exit "${FAKE_BEHAVIOUR#exit:}" ;;
  sleep) exec sleep 30 ;;
  oom) exit 137 ;;
  envfile) prev=""; for a in "$@"; do [ "$prev" = "--env-file" ] && f="$a"; prev="$a"; done
           stat -c '%a' "$f" >&2; cat "$f" >&2 ;;
  flood) head -c 5000000 /dev/zero; exec sleep 30 ;;
  fill) i=0; while [ $i -lt 100 ]; do head -c 1048576 /dev/zero > "$FAKE_OUTPUT/f$i"; i=$((i+1)); done
        exec sleep 30 ;;
esac
"""


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "podman"
    path.parent.mkdir()
    path.write_text(FAKE_ENGINE, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def spec(tmp_path: Path, **changes: object) -> SandboxSpec:
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "data.csv").write_text("a\n1\n", encoding="utf-8")
    fields: dict[str, object] = {
        "command": ["python", "train.py"],
        "output_dir": tmp_path / "out",
        "inputs": [(tmp_path / "data.csv", "data")],
        "timeout_seconds": 20.0,
    }
    return SandboxSpec(**{**fields, **changes})


def test_when_the_engine_runs_then_output_is_streamed_and_the_exit_status_kept(
    tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "exit:3")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))
    out: list[bytes] = []
    err: list[bytes] = []

    result = box.run(spec(tmp_path), out.append, err.append)

    assert box.available()
    assert result.exit_code == 3
    assert (result.timed_out, result.oom_killed, result.signal) == (False, False, None)
    assert b"".join(out).decode().splitlines() == list(result.argv[1:])
    assert b"".join(err) == b"to stderr\n"
    assert result.argv[-3:] == (IMAGE.pinned, "python", "train.py")
    assert f"{tmp_path / 'data.csv'}:/input/data:ro" in result.argv
    assert any(arg.startswith(f"seccomp={tmp_path / 'seccomp'}/warden-seccomp-") for arg in result.argv)


def test_when_the_job_outlives_its_timeout_then_the_container_is_killed(
    tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "sleep")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))

    result = box.run(spec(tmp_path, timeout_seconds=1.0), lambda _: None, lambda _: None)

    assert result.timed_out
    name = result.argv[result.argv.index("--name") + 1]
    assert (fake_engine.parent / "killed").read_text().strip() == name


def test_an_engine_status_of_137_is_reported_as_out_of_memory(
    tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "oom")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))
    result = box.run(spec(tmp_path), lambda _: None, lambda _: None)
    assert (result.exit_code, result.signal, result.oom_killed) == (137, 9, True)


def test_the_engine_reads_the_job_s_variables_from_a_private_file_gone_after_the_run(
    tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "envfile")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))
    err: list[bytes] = []

    result = box.run(spec(tmp_path, env={"API_TOKEN": "s3cret"}), lambda _: None, err.append)

    assert b"".join(err).decode().splitlines() == ["to stderr", "600", "API_TOKEN=s3cret"]
    assert "s3cret" not in " ".join(result.argv)
    assert not Path(result.argv[result.argv.index("--env-file") + 1]).exists()


@pytest.mark.parametrize(
    ("behaviour", "limits", "limit"),
    [("flood", {"log_bytes": 1 << 20}, "log_bytes"), ("fill", {"output_bytes": 8 << 20}, "output_bytes")],
)
def test_a_container_past_its_log_or_output_limit_is_killed_and_ends_limit_exceeded(
    tmp_path: Path,
    fake_engine: Path,
    monkeypatch: pytest.MonkeyPatch,
    behaviour: str,
    limits: dict[str, int],
    limit: str,
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", behaviour)
    monkeypatch.setenv("FAKE_OUTPUT", str(tmp_path / "out"))
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))
    out: list[bytes] = []

    result = box.run(spec(tmp_path, timeout_seconds=60.0, **limits), out.append, lambda _: None)

    assert result.limit_exceeded == limit
    assert not result.timed_out
    assert (fake_engine.parent / "killed").read_text().strip() == result.argv[result.argv.index("--name") + 1]
    assert sum(len(chunk) for chunk in out) <= limits.get("log_bytes", 64 << 20)


def test_a_run_with_a_gpu_hands_the_engine_the_cdi_device_the_host_s_spec_names(
    tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "exit:0")
    cdi = tmp_path / "cdi"
    cdi.mkdir()
    (cdi / "nvidia.yaml").write_text("kind: nvidia.com/gpu\ndevices:\n- name: '1'\n", encoding="utf-8")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine), cdi_dirs=[cdi])

    result = box.run(spec(tmp_path, gpus=[GpuDevice("1", GpuKind.INDEX)]), lambda _: None, lambda _: None)

    assert result.argv[result.argv.index("--device") : result.argv.index("--device") + 2] == (
        "--device",
        "nvidia.com/gpu=1",
    )
    assert "NVIDIA_VISIBLE_DEVICES=void" in result.argv
    with pytest.raises(GpuUnavailable, match="no_cdi"):  # podman without a spec: refused before anything runs
        ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine), cdi_dirs=[]).run(
            spec(tmp_path, gpus=[GpuDevice("1", GpuKind.INDEX)]), lambda _: None, lambda _: None
        )


def test_a_missing_or_unusable_engine_is_reported_not_run(tmp_path: Path) -> None:
    missing = ContainerSandbox(Engine.DOCKER, IMAGE, tmp_path, executable=None)
    if shutil.which("docker") is None:
        assert "not found on PATH" in str(missing.unavailable_reason())
    broken = tmp_path / "docker"
    broken.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n", encoding="utf-8")
    broken.chmod(0o755)
    box = ContainerSandbox(Engine.DOCKER, IMAGE, tmp_path, executable=str(broken))
    assert box.unavailable_reason() == f"{broken} info failed: Cannot connect to the Docker daemon"


def test_an_image_off_the_allow_list_is_refused_when_the_sandbox_is_made(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused):
        ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path, allowlist=["registry.example/other/*"])
    ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path, allowlist=["registry.example/team/*"])


def test_run_job_admits_runs_and_records_the_container_backend(
    services: Services, tmp_path: Path, fake_engine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BEHAVIOUR", "exit:0")
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n", encoding="utf-8")
    approval = services.approvals.create("fraud model", [data], created_by="alice")
    box = ContainerSandbox(Engine.PODMAN, IMAGE, tmp_path / "seccomp", executable=str(fake_engine))
    request = JobRequest(approval.id, [Input(data, "data")], tmp_path / "out", ["python", "train.py"])

    report = run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=box)

    manifest = json.loads((report.record_dir / "manifest.json").read_text())
    assert (manifest["backend"], manifest["image"], manifest["exit_code"]) == ("podman", IMAGE.pinned, 0)
    services.audit.flush()
    events = [e.event.to_dict() for e in services.audit.scan() if e.event.action in {"job.start", "job.end"}]
    assert [(e["action"], e["details"]["backend"]) for e in events] == [("job.start", "podman"), ("job.end", "podman")]
    assert events[0]["details"]["image"] == IMAGE.pinned
    assert services.approvals.get(approval.id).runs_used == 1


REAL_IMAGE = os.environ.get("WARDEN_TEST_IMAGE")
REAL_ENGINES = [e for e in Engine if ContainerSandbox(e, IMAGE, Path("/nonexistent")).available()]


@pytest.mark.skipif(
    not REAL_ENGINES or not REAL_IMAGE,
    reason="CONTAINER RUN NOT TESTED: no working podman or docker here, or WARDEN_TEST_IMAGE "
    "(an image pinned by digest with /bin/sh) is not set",
)
def test_a_real_engine_runs_the_job_without_network_and_with_a_read_only_input(tmp_path: Path) -> None:
    assert REAL_IMAGE is not None
    box = ContainerSandbox(REAL_ENGINES[0], parse_image(REAL_IMAGE), tmp_path / "seccomp")
    script = "cat /input/data > /output/copy && ! (echo x >> /input/data) 2>/dev/null && id -u > /output/uid"
    result = box.run(spec(tmp_path, command=["/bin/sh", "-c", script]), lambda _: None, lambda _: None)
    assert result.ok
    assert (tmp_path / "out" / "copy").read_text() == "a\n1\n"
    assert (tmp_path / "out" / "uid").read_text().strip() == "65534"
