"""``run_job``: admission, the sandboxed run, the record beside the output, and the two audit events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.jobs.conftest import FAKE_GPUS
from warden.errors import ApprovalRefusal, ApprovalRefused, InvalidArgument
from warden.jobs.admission import Input
from warden.jobs.gpu_driver import GpuHost
from warden.jobs.gpus import GpuDevice, GpuKind, GpuPool, GpusBusy, GpusUnsatisfiable, GpuUnavailable
from warden.jobs.runner import (
    LIMIT_EXIT_STATUS,
    InputChanged,
    JobReport,
    JobRequest,
    JobStatus,
    record_dir,
    run_job,
)
from warden.jobs.sandbox import BwrapSandbox
from warden.services import Services

PYTHON = "/usr/bin/python3"
SANDBOX = BwrapSandbox()
pytestmark = pytest.mark.skipif(
    not SANDBOX.available() or not Path(PYTHON).exists(),
    reason=f"JOB RUNNER TESTS NOT RUN: the bwrap sandbox is unavailable ({SANDBOX.unavailable_reason()}) "
    f"or {PYTHON} is missing",
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("amount,label\n12.5,0\n99.0,1\n", encoding="utf-8")
    return path


def job(services: Services, data: Path, output: Path, script: str, **options: Any) -> JobReport:
    approval = services.approvals.create("fraud model", [data], created_by="alice")
    request = JobRequest(
        approval_id=approval.id,
        inputs=[Input(data, "data")],
        output_dir=output,
        command=[PYTHON, "-c", script],
        timeout_seconds=options.pop("timeout_seconds", 60.0),
        **options,
    )
    return run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX)


def admin_events(services: Services) -> list[dict[str, Any]]:
    services.audit.flush()
    return [e.event.to_dict() for e in services.audit.scan() if e.event.action]


def test_a_job_reads_its_input_writes_its_output_and_leaves_a_record_beside_it(
    services: Services, data: Path, tmp_path: Path
) -> None:
    script = (
        "import sys; rows = open('/input/data').read().splitlines(); "
        "open('/output/model.txt', 'w').write(str(len(rows))); print('trained'); print('warn', file=sys.stderr)"
    )
    report = job(services, data, tmp_path / "out", script)

    assert report.exit_status == 0
    assert (tmp_path / "out" / "model.txt").read_text() == "3"
    [output] = report.outputs
    assert (output.path, output.size) == ("model.txt", 1)
    record = record_dir(tmp_path / "out")
    assert report.record_dir == record
    assert (record / "stdout.log").read_text() == "trained\n"
    assert (record / "stderr.log").read_text() == "warn\n"
    manifest = (record / "manifest.json").read_text()
    assert '"purpose": "fraud model"' in manifest
    assert output.sha256 in manifest


def test_the_run_is_audited_at_its_start_and_end_with_approval_inputs_command_and_status(
    services: Services, data: Path, tmp_path: Path
) -> None:
    report = job(services, data, tmp_path / "out", "raise SystemExit(3)")

    assert report.exit_status == 3
    events = {e["action"]: e for e in admin_events(services) if e["action"].startswith("job.")}
    start, end = events["job.start"], events["job.end"]
    assert start["target"] == end["target"] == report.admission.approval.id
    assert start["details"]["purpose"] == "fraud model"
    assert start["details"]["inputs"] == f"data={report.admission.inputs[0].sha256}"
    assert "SystemExit(3)" in start["details"]["command"]
    assert end["details"]["exit_code"] == 3
    assert end["details"]["timed_out"] == 0
    assert end["details"]["os_user"] == "alice"


def test_a_job_past_its_timeout_is_killed_and_exits_124(services: Services, data: Path, tmp_path: Path) -> None:
    report = job(services, data, tmp_path / "out", "import time; time.sleep(60)", timeout_seconds=1.0)

    assert report.result.timed_out
    assert report.exit_status == 124
    assert report.exit_description() == "timed out"


def test_a_link_the_job_makes_is_recorded_and_never_followed(services: Services, data: Path, tmp_path: Path) -> None:
    report = job(services, data, tmp_path / "out", "import os; os.symlink('/etc/shadow', '/output/shadow')")

    [link] = report.outputs
    assert (link.path, link.sha256, link.link_target, link.released) == ("shadow", None, "/etc/shadow", False)
    assert not (tmp_path / "out" / "shadow").is_symlink()


def test_an_unapproved_input_is_refused_before_anything_is_created(
    services: Services, data: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("x\n1\n", encoding="utf-8")
    approval = services.approvals.create("fraud model", [data], created_by="alice")
    request = JobRequest(approval.id, [Input(other, "data")], tmp_path / "out", [PYTHON, "-c", "pass"])

    with pytest.raises(ApprovalRefused) as refused:
        run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX)

    assert refused.value.reason is ApprovalRefusal.INPUT_NOT_APPROVED
    assert not (tmp_path / "out").exists()
    assert not record_dir(tmp_path / "out").exists()


def test_a_non_empty_output_is_refused_without_spending_a_run(services: Services, data: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("earlier", encoding="utf-8")
    approval = services.approvals.create("fraud model", [data], created_by="alice", max_runs=1)
    request = JobRequest(approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", "pass"])

    with pytest.raises(InvalidArgument, match="must be an empty directory"):
        run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX)

    assert services.approvals.get(approval.id).runs_used == 0


def test_an_input_that_changes_during_the_run_fails_it_and_is_named_in_the_audit(
    services: Services, data: Path, tmp_path: Path
) -> None:
    def scan_then_change(path: Path) -> list[str]:  # runs after admission hashed the input
        path.write_text("amount,label\n1,1\n", encoding="utf-8")
        return []

    approval = services.approvals.create("fraud model", [data], created_by="alice")
    request = JobRequest(approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", "pass"])

    with pytest.raises(InputChanged, match="data"):
        run_job(
            request,
            approvals=services.approvals,
            audit=services.audit,
            actor="alice",
            sandbox=SANDBOX,
            scan=scan_then_change,
        )

    [end] = [e for e in admin_events(services) if e["action"] == "job.end"]
    assert end["details"]["inputs_changed"] == "data"


def test_the_job_reads_what_admission_hashed_even_if_the_original_changes_meanwhile(
    services: Services, data: Path, tmp_path: Path
) -> None:
    # Inputs were bound live: a swap during the run (and back) let a job read unapproved data unnoticed.
    approved = data.read_text(encoding="utf-8")

    def swap_original(_snapshot: Path) -> list[str]:  # called during admission, after hashing
        data.write_text("name,ssn\nAlice,123-45-6789\n", encoding="utf-8")
        return []

    approval = services.approvals.create("fraud model", [data], created_by="alice")
    request = JobRequest(
        approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", "print(open('/input/data').read())"]
    )
    out = bytearray()
    report = run_job(
        request,
        approvals=services.approvals,
        audit=services.audit,
        actor="alice",
        sandbox=SANDBOX,
        scan=swap_original,
        stdout=out.extend,
    )

    assert report.exit_status == 0
    assert out.decode().strip() == approved.strip()
    assert not list(tmp_path.glob(".warden-inputs-*"))  # the private copies are gone


def test_outputs_too_deep_to_open_by_path_pipes_and_open_modes_are_all_recorded(
    services: Services, data: Path, tmp_path: Path
) -> None:
    # A 6,000-character path once made the hashing fail: no manifest and no job.end. A FIFO went unlisted, and a
    # job could leave its output writable by everyone.
    script = (
        "import os; os.mkfifo('/output/pipe'); os.chmod('/output', 0o777)\n"
        "for _ in range(30):\n    os.mkdir('d' * 200); os.chdir('d' * 200)\n"
        "open('deep.txt', 'w').write('x')"
    )
    report = job(services, data, tmp_path / "out", script)

    kinds = {o.path.rsplit("/", 1)[-1]: o.kind for o in report.outputs}
    assert kinds["pipe"] == "fifo"
    assert kinds["deep.txt"] == "file"
    [deep] = [o for o in report.outputs if o.path.endswith("deep.txt")]
    assert deep.sha256 is not None
    assert (tmp_path / "out").stat().st_mode & 0o022 == 0
    assert [e["action"] for e in admin_events(services) if e["action"].startswith("job.")] == ["job.start", "job.end"]


def test_a_bad_environment_name_is_refused_before_a_run_is_spent(
    services: Services, data: Path, tmp_path: Path
) -> None:
    approval = services.approvals.create("fraud model", [data], created_by="alice", max_runs=1)
    request = JobRequest(approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", "pass"], env={"A-B": "1"})

    with pytest.raises(InvalidArgument, match="environment variable"):
        run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX)

    assert services.approvals.get(approval.id).runs_used == 0


def every_command_line() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:  # the process ended meanwhile
                continue
    return lines


def test_environment_values_appear_in_no_command_line_and_the_record_is_private(
    services: Services, data: Path, tmp_path: Path
) -> None:
    # Found by a hostile job: --env values travelled in bwrap's argv (visible in ps to every user) and were stored
    # in a world-readable manifest.
    secret = "tok-" + "9f3c1a7e5b" * 3
    seen: list[bytes] = []

    def look_while_it_runs(chunk: bytes) -> None:
        if b"running" in chunk:
            seen.extend(line for line in every_command_line() if secret.encode() in line)

    approval = services.approvals.create("fraud model", [data], created_by="alice")
    script = "import os, time; assert os.environ['API_TOKEN'][:4] == 'tok-'; print('running', flush=1); time.sleep(1)"
    request = JobRequest(
        approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", script], env={"API_TOKEN": secret}
    )
    report = run_job(
        request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX,
        stdout=look_while_it_runs,
    )  # fmt: skip

    assert report.exit_status == 0
    assert seen == []
    record = report.record_dir
    assert record.stat().st_mode & 0o777 == 0o700
    for name in ("manifest.json", "stdout.log", "stderr.log"):
        assert (record / name).stat().st_mode & 0o777 == 0o600, name
    manifest_text = (record / "manifest.json").read_text()
    assert secret not in manifest_text
    assert json.loads(manifest_text)["env"] == ["API_TOKEN"]
    assert all(secret not in json.dumps(event) for event in admin_events(services))


def test_a_job_stopped_at_its_output_limit_ends_limit_exceeded_in_the_manifest_and_the_audit(
    services: Services, data: Path, tmp_path: Path
) -> None:
    script = (
        "import time\ntry:\n    open('/output/big', 'wb').write(b'x' * (64 << 20))\nexcept OSError:\n    pass\n"
        "time.sleep(100)"
    )
    report = job(services, data, tmp_path / "out", script, max_output_bytes=1 << 20, timeout_seconds=120.0)

    assert report.status is JobStatus.LIMIT_EXCEEDED
    assert report.exit_status == LIMIT_EXIT_STATUS
    manifest = json.loads((report.record_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["limit_exceeded"]) == ("limit_exceeded", "output_bytes")
    assert manifest["max_output_bytes"] == 1 << 20
    [end] = [e for e in admin_events(services) if e["action"] == "job.end"]
    assert (end["details"]["status"], end["details"]["limit_exceeded"]) == ("limit_exceeded", "output_bytes")


def test_links_the_job_made_are_listed_as_not_released(services: Services, data: Path, tmp_path: Path) -> None:
    script = (
        "import os; open('/output/m.txt', 'w').write('m'); os.symlink('/etc/passwd', '/output/passwd'); "
        "os.symlink('../../', '/output/up'); os.symlink('m.txt', '/output/again')"
    )
    report = job(services, data, tmp_path / "out", script)

    manifest = json.loads((report.record_dir / "manifest.json").read_text())
    entries = {o["path"]: (o["kind"], o["link_target"], o["released"]) for o in manifest["outputs"]}
    assert entries == {
        "again": ("link", "m.txt", False),
        "m.txt": ("file", None, True),
        "passwd": ("link", "/etc/passwd", False),
        "up": ("link", "../../", False),
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.txt"]


# --- GPUs ---------------------------------------------------------------------------------------------------------


def gpu_job(
    services: Services, data: Path, output: Path, pool: GpuPool, host: GpuHost, script: str, **options: Any
) -> tuple[JobRequest, Any]:
    approval = services.approvals.create("fraud model", [data], created_by="alice", max_runs=2)
    request = JobRequest(approval.id, [Input(data, "data")], output, [PYTHON, "-c", script], gpus=1, **options)

    def run() -> JobReport:
        return run_job(
            request, approvals=services.approvals, audit=services.audit, actor="alice",
            sandbox=BwrapSandbox(gpu_host=host), gpu_pool=pool, job_id="job-1",
        )  # fmt: skip

    return request, run


def two_gpus() -> GpuPool:
    return GpuPool([GpuDevice("0", GpuKind.INDEX), GpuDevice("1", GpuKind.INDEX)])


def test_a_gpu_job_sees_only_its_device_and_the_manifest_and_audit_name_it(
    services: Services, data: Path, tmp_path: Path, fake_gpu_host: GpuHost
) -> None:
    pool = two_gpus()
    pool.acquire(1, "someone-else")  # holds GPU 0: the job gets GPU 1
    script = (
        "import os; print(sorted(n for n in os.listdir('/dev') if n.startswith('nvidia')), "
        "os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    _, run = gpu_job(services, data, tmp_path / "out", pool, fake_gpu_host, script)

    report = run()

    assert report.exit_status == 0
    uuid = FAKE_GPUS[1].uuid
    assert (record_dir(tmp_path / "out") / "stdout.log").read_text() == f"['nvidia1', 'nvidiactl'] {uuid}\n"
    manifest = json.loads((report.record_dir / "manifest.json").read_text())
    assert manifest["gpus"] == ["1"]
    events = {e["action"]: e for e in admin_events(services) if e["action"].startswith("job.")}
    assert events["job.start"]["details"]["gpus"] == events["job.end"]["details"]["gpus"] == "1"
    assert pool.holders() == {"0": "someone-else"}  # released after the run


def test_a_job_without_gpus_records_none(services: Services, data: Path, tmp_path: Path) -> None:
    report = job(services, data, tmp_path / "out", "pass")

    assert report.manifest()["gpus"] == []
    events = {e["action"]: e for e in admin_events(services) if e["action"].startswith("job.")}
    assert events["job.start"]["details"]["gpus"] is None


def test_when_the_gpus_are_busy_the_job_is_refused_before_a_run_is_spent(
    services: Services, data: Path, tmp_path: Path, fake_gpu_host: GpuHost
) -> None:
    pool = two_gpus()
    pool.acquire(2, "someone-else")
    request, run = gpu_job(services, data, tmp_path / "out", pool, fake_gpu_host, "pass")

    with pytest.raises(GpusBusy):
        run()

    assert services.approvals.get(request.approval_id).runs_used == 0
    assert not (tmp_path / "out").exists()


def test_a_job_asking_gpus_of_a_machine_without_a_pool_is_unsatisfiable_before_a_run_is_spent(
    services: Services, data: Path, tmp_path: Path
) -> None:
    approval = services.approvals.create("fraud model", [data], created_by="alice")
    request = JobRequest(approval.id, [Input(data, "data")], tmp_path / "out", [PYTHON, "-c", "pass"], gpus=1)

    with pytest.raises(GpusUnsatisfiable, match="WARDEN_JOB_GPUS is empty"):
        run_job(request, approvals=services.approvals, audit=services.audit, actor="alice", sandbox=SANDBOX)

    assert services.approvals.get(approval.id).runs_used == 0


def test_the_lease_is_released_however_the_run_ends(
    services: Services, data: Path, tmp_path: Path, fake_gpu_host: GpuHost
) -> None:
    pool = two_gpus()
    request, run = gpu_job(services, data, tmp_path / "a", pool, fake_gpu_host, "raise SystemExit(4)")
    assert run().exit_status == 4  # the job failed
    assert pool.holders() == {}

    services.approvals.revoke(request.approval_id, by="bob")
    refused = JobRequest(request.approval_id, [Input(data, "data")], tmp_path / "b", [PYTHON, "-c", "pass"], gpus=2)
    with pytest.raises(ApprovalRefused):  # admission refused it after the lease was taken
        run_job(
            refused, approvals=services.approvals, audit=services.audit, actor="alice",
            sandbox=BwrapSandbox(gpu_host=fake_gpu_host), gpu_pool=pool,
        )  # fmt: skip
    assert pool.holders() == {}


def test_a_device_the_sandbox_cannot_reach_is_refused_before_a_run_is_spent(
    services: Services, data: Path, tmp_path: Path, fake_gpu_host: GpuHost
) -> None:
    pool = GpuPool([GpuDevice("7", GpuKind.INDEX)])  # the host's driver lists GPUs 0 and 1 only
    request, run = gpu_job(services, data, tmp_path / "out", pool, fake_gpu_host, "pass")

    with pytest.raises(GpuUnavailable, match="unresolved: GPU 7"):
        run()

    assert services.approvals.get(request.approval_id).runs_used == 0
    assert pool.holders() == {}
