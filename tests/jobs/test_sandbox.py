"""The bwrap sandbox: each escape attempt runs inside it and is shown to fail; a well-behaved job succeeds.

Every attempt is a small Python script run by the system interpreter inside the sandbox. It prints ``BLOCKED …``
and exits 0 when the attempt failed the way it should, and prints ``ESCAPED …`` and exits 3 when it succeeded, so
a script that cannot even start fails the test instead of passing it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden.errors import InvalidArgument
from warden.jobs import seccomp
from warden.jobs.limits import CGROUP_V1, CGROUP_V2, RLIMIT, create_limits
from warden.jobs.outputs import tmpfs_size
from warden.jobs.sandbox import (
    DEFAULT_ENV,
    LANDLOCK_PYTHON,
    LANDLOCK_TRAMPOLINE,
    BwrapSandbox,
    SandboxResult,
    SandboxSpec,
    SandboxUnavailable,
    build_argv,
    landlock_abi,
    python_runtime_paths,
)

PYTHON = "/usr/bin/python3"

_PRELUDE = """
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def blocked(what):
    print("BLOCKED", what, flush=True)
def escaped(what):
    print("ESCAPED", what, flush=True)
    sys.exit(3)
def refused(what, call):
    try:
        call()
    except OSError as exc:
        blocked(f"{what}: {exc}")
    else:
        escaped(what)
def refused_c(what, result, expected=errno.EPERM):
    err = ctypes.get_errno()
    if result == -1 and err == expected:
        blocked(f"{what}: {os.strerror(err)}")
    else:
        escaped(f"{what}: returned {result}, errno {err}")
"""


@pytest.fixture(scope="module")
def sandbox() -> BwrapSandbox:
    """The bwrap sandbox; the whole suite skips, saying why, where bwrap or user namespaces are missing."""
    candidate = BwrapSandbox()
    reason = candidate.unavailable_reason()
    if reason is not None:
        pytest.skip(f"SANDBOX ESCAPE SUITE NOT RUN: {reason}")
    if not Path(PYTHON).exists():
        pytest.skip(f"SANDBOX ESCAPE SUITE NOT RUN: {PYTHON} (Debian's python3) is needed inside the sandbox")
    return candidate


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    (path / "train.csv").write_text("amount,label\n12.5,0\n900.0,1\n")
    return path


class Captured:
    """Collects the chunks a sink receives."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()


def run_script(sandbox: BwrapSandbox, output_dir: Path, code: str, **options: object) -> tuple[SandboxResult, str, str]:
    """Run ``code`` (after the prelude) with the system Python inside the sandbox."""
    out, err = Captured(), Captured()
    script = _PRELUDE + textwrap.dedent(code)
    spec = SandboxSpec(command=[PYTHON, "-I", "-c", script], output_dir=output_dir, **options)  # type: ignore[arg-type]
    result = sandbox.run(spec, out, err)
    return result, out.text, err.text


def assert_blocked(result: SandboxResult, stdout: str, stderr: str, attempts: int = 1) -> None:
    assert "ESCAPED" not in stdout, stdout
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert stdout.count("BLOCKED") == attempts, stdout


# --- a well-behaved job ---------------------------------------------------------------------------------------


def test_when_a_training_script_reads_input_and_writes_output_then_it_succeeds(
    sandbox: BwrapSandbox, data_dir: Path, output_dir: Path
) -> None:
    code = """
    rows = open("/input/data/train.csv").read().splitlines()[1:]
    total = sum(float(row.split(",")[0]) for row in rows)
    os.makedirs("/output/model", exist_ok=True)
    with open("/output/model/weights.txt", "w") as handle:
        handle.write(f"{len(rows)} rows, total {total}\\n")
    with open("/tmp/scratch", "w") as handle:
        handle.write("scratch space works")
    print("trained on", len(rows), "rows")
    print("a warning", file=sys.stderr)
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, inputs=[(data_dir, "data")])
    assert result.ok, stderr
    assert result.exit_code == 0
    assert result.signal is None
    assert not result.timed_out
    assert not result.oom_killed
    assert result.started <= result.ended
    assert stdout == "trained on 2 rows\n"
    assert stderr == "a warning\n"
    assert (output_dir / "model" / "weights.txt").read_text() == "2 rows, total 912.5\n"


def test_when_an_input_is_a_single_file_then_it_is_bound_at_its_name(
    sandbox: BwrapSandbox, data_dir: Path, output_dir: Path
) -> None:
    code = """
    print(open("/input/train.csv").read().count("\\n"))
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, inputs=[(data_dir / "train.csv", "train.csv")])
    assert result.ok, stderr
    assert stdout == "3\n"


def test_when_the_job_writes_then_the_sink_receives_output_while_it_runs(
    sandbox: BwrapSandbox, output_dir: Path, data_dir: Path
) -> None:
    # The job waits for a file that the host creates only after the sink has seen "ready": output is streamed.
    # The host reaches the job through an input directory (bound read-only; the host may still add to it).
    go = data_dir / "go"

    def on_stdout(chunk: bytes) -> None:
        chunks.append(chunk)
        if b"ready" in chunk:
            go.write_text("go")

    chunks: list[bytes] = []
    code = """
    import time
    print("ready", flush=True)
    for _ in range(3000):
        if os.path.exists("/input/data/go"):
            print("done", flush=True)
            break
        time.sleep(0.01)
    else:
        sys.exit("the host never answered: output was not streamed")
    """
    command = [PYTHON, "-I", "-c", _PRELUDE + textwrap.dedent(code)]
    spec = SandboxSpec(command=command, output_dir=output_dir, inputs=[(data_dir, "data")])
    result = sandbox.run(spec, on_stdout, Captured())
    assert result.ok
    assert b"".join(chunks) == b"ready\ndone\n"


def test_when_the_job_writes_more_than_a_pipe_holds_then_every_byte_arrives_in_order(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    code = """
    for i in range(20000):
        print(f"line {i:05d}", flush=(i % 100 == 0))
        if i % 1000 == 0:
            print(f"progress {i}", file=sys.stderr, flush=True)
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code)
    assert result.ok
    assert stdout.splitlines() == [f"line {i:05d}" for i in range(20000)]
    assert stderr.splitlines() == [f"progress {i}" for i in range(0, 20000, 1000)]


def test_when_a_virtual_environment_is_given_then_its_interpreter_runs(sandbox: BwrapSandbox, output_dir: Path) -> None:
    out = Captured()
    spec = SandboxSpec(
        command=[sys.executable, "-c", "import sys; print(sys.prefix)"],
        output_dir=output_dir,
        extra_ro_paths=python_runtime_paths(sys.prefix, sys.base_prefix),
    )
    result = sandbox.run(spec, out, Captured())
    assert result.ok
    assert out.text.strip() == sys.prefix


def test_when_the_host_has_environment_variables_then_the_job_sees_only_its_own(
    sandbox: BwrapSandbox, output_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_HOST_SECRET", "s3cret")
    code = """
    print(sorted(os.environ.items()))
    """
    result, stdout, _ = run_script(sandbox, output_dir, code, env={"SEED": "7"})
    assert result.ok
    expected = {**DEFAULT_ENV, "SEED": "7", "PWD": "/output"}  # PWD: Python's own, from the working directory
    assert stdout.strip() == str(sorted(expected.items()))
    assert "s3cret" not in stdout


# --- file system escapes --------------------------------------------------------------------------------------


def test_when_the_job_writes_to_an_input_then_it_is_refused(
    sandbox: BwrapSandbox, data_dir: Path, output_dir: Path
) -> None:
    code = """
    refused("overwrite an input file", lambda: open("/input/data/train.csv", "w"))
    refused("append to an input file", lambda: open("/input/data/train.csv", "a"))
    refused("create a file in an input", lambda: open("/input/data/new.csv", "w"))
    refused("delete an input file", lambda: os.unlink("/input/data/train.csv"))
    refused("chmod an input file", lambda: os.chmod("/input/data/train.csv", 0o777))
    refused("create a new input", lambda: os.mkdir("/input/extra"))
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, inputs=[(data_dir, "data")])
    assert_blocked(result, stdout, stderr, attempts=6)
    assert (data_dir / "train.csv").read_text() == "amount,label\n12.5,0\n900.0,1\n"
    assert sorted(p.name for p in data_dir.iterdir()) == ["train.csv"]


def test_when_the_job_writes_outside_output_then_it_is_refused(
    sandbox: BwrapSandbox, output_dir: Path, tmp_path: Path
) -> None:
    code = """
    for target in ("/usr/warden-escape", "/warden-escape", "/etc/warden-escape", "/bin/warden-escape",
                   "/usr/bin/python3", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
                   "/proc/sys/kernel/hostname", "/proc/sys/net/ipv4/ip_forward", "/proc/sysrq-trigger",
                   "/proc/self/oom_score_adj", "/dev/warden-escape"):
        refused(f"write {target}", lambda: os.open(target, os.O_WRONLY | os.O_CREAT))
    refused("create a directory at the root", lambda: os.mkdir("/home"))
    open("/tmp/private-marker", "w").write("inside")
    open("/dev/shm/private-marker", "w").write("inside")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code)
    assert_blocked(result, stdout, stderr, attempts=13)
    for leaked in (Path("/usr/warden-escape"), Path("/warden-escape"), Path("/etc/warden-escape")):
        assert not leaked.exists()
    assert not Path("/tmp/private-marker").exists()  # noqa: S108 - the job's /tmp is its own tmpfs
    assert not Path("/dev/shm/private-marker").exists()  # noqa: S108 - and so is its /dev/shm


def test_when_the_job_reads_a_host_file_not_bound_in_then_it_is_not_there(
    sandbox: BwrapSandbox, output_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    code = f"""
    for target in ({str(secret)!r}, {str(secret.parent)!r}, "/etc/passwd", "/etc/shadow", "/root", "/home",
                   "/etc/hosts", "/sys", "/var/log", "/work", "/proc/1/root/etc/shadow"):
        try:
            os.stat(target)
        except (FileNotFoundError, PermissionError) as exc:  # /proc/1/root: Landlock refuses to cross its domain
            blocked(f"{{target}}: {{exc.strerror}}")
        else:
            escaped(f"{{target}} is visible")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code)
    assert_blocked(result, stdout, stderr, attempts=11)
    assert "host secret" not in stdout


def test_when_the_job_looks_for_inherited_file_descriptors_then_it_has_only_stdio(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    code = """
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    extra = [fd for fd in fds if fd > 3]  # 3 is listdir's own descriptor
    if extra:
        escaped(f"inherited descriptors {extra}: {[os.readlink(f'/proc/self/fd/{fd}') for fd in extra]}")
    blocked("no inherited descriptor (the seccomp memfd is closed)")
    """
    assert_blocked(*run_script(sandbox, output_dir, code))


# --- network --------------------------------------------------------------------------------------------------


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on the host's 127.0.0.1 that records every connection it accepts."""
    accepted: list[object] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        server.close()


def test_when_the_job_connects_to_a_host_listener_then_it_is_refused(
    sandbox: BwrapSandbox, output_dir: Path, host_listener: tuple[int, list[object]]
) -> None:
    port, accepted = host_listener
    code = f"""
    refused("TCP to the host's loopback", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5))
    refused("UDP socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    refused("IPv6 socket", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
    refused("netlink socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
    refused("packet socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
    left, right = socket.socketpair()  # AF_UNIX stays usable: multiprocessing and friends need it
    left.sendall(b"x"); assert right.recv(1) == b"x"
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code)
    assert_blocked(result, stdout, stderr, attempts=5)
    assert accepted == []


def test_when_the_job_resolves_a_hostname_then_it_fails(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    for name in ("example.com", "pypi.org"):
        refused(f"resolve {name}", lambda: socket.getaddrinfo(name, 443))
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=2)


# --- privilege and kernel escapes -----------------------------------------------------------------------------


def test_when_the_job_ptraces_another_process_then_it_is_refused(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    import signal, time
    PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_SEIZE = 0, 16, 0x4206
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    refused_c("PTRACE_ATTACH to a sibling", libc.ptrace(PTRACE_ATTACH, child, None, None))
    refused_c("PTRACE_SEIZE a sibling", libc.ptrace(PTRACE_SEIZE, child, None, None))
    refused_c("PTRACE_ATTACH to pid 1", libc.ptrace(PTRACE_ATTACH, 1, None, None))
    refused_c("PTRACE_TRACEME", libc.ptrace(PTRACE_TRACEME, 0, None, None))
    refused("read another process's memory", lambda: open(f"/proc/{child}/mem", "rb").read(1))
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=5)


def test_when_the_job_takes_another_process_s_descriptors_then_it_is_refused(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    # pidfd_getfd does what ptrace is refused for; it once got through when Landlock was off.
    code = """
    libc.syscall.restype = ctypes.c_long
    pidfd = libc.syscall(434, 1, 0)  # pidfd_open(1, 0): allowed, it only names the process
    if pidfd < 0:
        escaped(f"pidfd_open(1) failed with errno {ctypes.get_errno()}: the attempt below proves nothing")
    refused_c("pidfd_getfd of pid 1's stdin", libc.syscall(438, pidfd, 0, 0))  # pidfd_getfd(pidfd, 0, 0)
    """
    assert_blocked(*run_script(sandbox, output_dir, code, landlock=False), attempts=1)  # seccomp alone


def test_when_the_job_mounts_then_it_is_refused(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    MS_REMOUNT, MS_BIND = 32, 4096
    refused_c("mount a tmpfs", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    refused_c("remount /input read-write", libc.mount(None, b"/", None, MS_REMOUNT, None))
    refused_c("bind-mount /usr over /output", libc.mount(b"/usr", b"/output", None, MS_BIND, None))
    refused_c("unmount /proc", libc.umount2(b"/proc", 0))
    refused_c("pivot_root", libc.syscall(155, b"/tmp", b"/tmp"))
    refused_c("chroot", libc.chroot(b"/tmp"))
    refused_c("fsopen (new mount API)", libc.syscall(430, b"tmpfs", 0))
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=7)


def test_when_the_job_unshares_or_enters_namespaces_then_it_is_refused(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    import subprocess
    CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x10000000, 0x40000000
    SIGCHLD = 17
    refused_c("unshare a user namespace", libc.unshare(CLONE_NEWUSER))
    refused_c("unshare a mount namespace", libc.unshare(CLONE_NEWNS))
    refused_c("unshare a network namespace", libc.unshare(CLONE_NEWNET))
    fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    refused_c("setns", libc.setns(fd, 0))
    for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET):
        pid = libc.syscall(56, flag | SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        refused_c(f"clone with namespace flag {flag:#x}", pid)
    refused_c("clone3 (glibc falls back to clone)", libc.syscall(435, 0, 0), errno.ENOSYS)
    done = subprocess.run(["/usr/bin/unshare", "--user", "--map-root-user", "/bin/true"], capture_output=True)
    if done.returncode == 0:
        escaped("the unshare tool")
    blocked(f"the unshare tool: {done.stderr.decode().strip()}")
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=9)


def test_when_the_job_raises_a_capability_or_its_uid_then_it_is_refused(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    code = """
    PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, CAP_NET_RAW = 47, 2, 21, 13
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status[cap], 16):
            escaped(f"{cap} = {status[cap]}")
    blocked("every capability set is empty")
    if status["NoNewPrivs"].strip() != "1":
        escaped("no_new_privs is off")
    blocked("no_new_privs is on")
    if status["Seccomp"].strip() != "2":
        escaped("no seccomp filter")
    blocked("a seccomp filter is loaded")
    if (os.getuid(), os.getgid()) != (65534, 65534):
        escaped(f"running as {os.getuid()}:{os.getgid()}")
    refused("setuid(0)", lambda: os.setuid(0))
    refused("setgid(0)", lambda: os.setgid(0))
    refused("setresuid(0, 0, 0)", lambda: os.setresuid(0, 0, 0))
    refused("setgroups([0])", lambda: os.setgroups([0]))
    refused_c("raise CAP_SYS_ADMIN into the ambient set", libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE,
                                                                      CAP_SYS_ADMIN, 0, 0))
    # capset(2) asking for every capability: the kernel refuses what the bounding set no longer holds.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(*[0xFFFFFFFF] * 6)
    refused_c("capset to all capabilities", libc.capset(header, data))
    refused("open a raw socket (CAP_NET_RAW)", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=10)


def test_when_the_job_uses_kernel_interfaces_it_never_needs_then_they_are_refused(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    code = """
    libc.syscall.restype = ctypes.c_long
    for name, number, args in [("bpf", 321, (0, 0, 0)), ("init_module", 175, (0, 0, 0)),
                               ("finit_module", 313, (0, 0, 0)), ("kexec_load", 246, (0, 0, 0, 0)),
                               ("keyctl", 250, (0, 0)), ("add_key", 248, (0, 0, 0, 0, 0)),
                               ("perf_event_open", 298, (0, 0, 0, -1, 0)), ("userfaultfd", 323, (0,)),
                               ("io_uring_setup", 425, (1, 0)), ("open_by_handle_at", 304, (0, 0, 0)),
                               ("reboot", 169, (0, 0, 0, 0)), ("syslog", 103, (3, 0, 0)),
                               ("swapon", 167, (0, 0))]:
        refused_c(name, libc.syscall(number, *args))
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=13)


def test_when_the_job_makes_a_set_id_file_then_it_is_refused(sandbox: BwrapSandbox, output_dir: Path) -> None:
    # Files in /output reach the host; a set-uid file there would run as its owner (host root, if Warden is root).
    code = """
    import shutil, stat
    shutil.copy("/bin/true", "/output/tool")
    os.chmod("/output/tool", 0o755)  # ordinary modes still work
    refused("chmod u+s", lambda: os.chmod("/output/tool", 0o4755))
    refused("chmod g+s", lambda: os.chmod("/output/tool", 0o2755))
    refused("fchmod u+s", lambda: os.fchmod(os.open("/output/tool", os.O_RDONLY), 0o4755))
    refused("create a set-uid file", lambda: os.open("/output/new", os.O_CREAT | os.O_WRONLY, 0o4755))
    refused("mknod a set-uid file", lambda: os.mknod("/output/node", 0o4755 | stat.S_IFREG))
    refused("mkdir a set-gid directory", lambda: os.mkdir("/output/dir", 0o2755))
    refused_c("openat2 (its mode is out of the filter's sight)", libc.syscall(437, -100, b"/output/x", 0, 0),
              errno.ENOSYS)
    """
    assert_blocked(*run_script(sandbox, output_dir, code), attempts=7)
    for path in output_dir.rglob("*"):
        assert not path.stat().st_mode & 0o6000, path


# --- resource limits ------------------------------------------------------------------------------------------


def test_when_the_job_forks_without_end_then_the_pids_limit_stops_it(sandbox: BwrapSandbox, output_dir: Path) -> None:
    probe = create_limits(None, 32, None)
    probe.release()
    if probe.mechanisms["pids"] == RLIMIT and os.geteuid() == 0:
        pytest.skip("FORK BOMB NOT RUN: no writable pids cgroup, and RLIMIT_NPROC does not bind root")
    code = """
    import time
    children = []
    try:
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except BlockingIOError as exc:
        blocked(f"fork bomb stopped after {len(children)} forks: {exc}")
    else:
        escaped(f"{len(children)} forks")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, pids=32)
    assert_blocked(result, stdout, stderr)
    forks = int(stdout.split("after ")[1].split()[0])
    assert forks < 32
    assert result.limits["pids"] in {CGROUP_V1, CGROUP_V2, RLIMIT}


def test_when_the_job_hogs_memory_then_the_memory_limit_stops_it(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    hoard = []
    try:
        for _ in range(64):  # up to 1 GiB, written so that every page is real
            hoard.append(b"x" * (16 * 1024 * 1024))
    except MemoryError:
        blocked(f"MemoryError after {len(hoard) * 16} MiB")
    else:
        escaped(f"allocated {len(hoard) * 16} MiB")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, memory_bytes=128 * 1024**2)
    assert "ESCAPED" not in stdout, stdout
    if result.limits["memory"] == RLIMIT:
        assert_blocked(result, stdout, stderr)
    else:  # the cgroup's OOM killer ended it
        assert result.oom_killed, (result, stdout, stderr)
        assert result.signal == signal.SIGKILL
        assert not result.ok


def test_when_cgroups_are_not_used_then_rlimits_bound_memory(output_dir: Path, sandbox: BwrapSandbox) -> None:
    rlimited = BwrapSandbox(use_cgroups=False)
    code = """
    hoard = []
    try:
        for _ in range(64):
            hoard.append(b"x" * (16 * 1024 * 1024))
    except MemoryError:
        blocked(f"MemoryError after {len(hoard) * 16} MiB")
    """
    pids = None if os.geteuid() == 0 else 256  # root: no RLIMIT_NPROC fallback (see the next test)
    result, stdout, stderr = run_script(rlimited, output_dir, code, memory_bytes=256 * 1024**2, pids=pids)
    assert result.limits == ({"memory": RLIMIT} if pids is None else {"memory": RLIMIT, "pids": RLIMIT})
    assert_blocked(result, stdout, stderr)


def test_when_root_has_no_pids_cgroup_then_a_pids_limit_is_refused_not_faked(output_dir: Path) -> None:
    # The kernel exempts root from RLIMIT_NPROC: 100 forks got through a "pids=20" job that reported "rlimit".
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: RLIMIT_NPROC binds this user, so the fallback is real here")
    with pytest.raises(SandboxUnavailable, match="kernel exempts root from RLIMIT_NPROC"):
        run_script(BwrapSandbox(use_cgroups=False), output_dir, "pass", pids=20)


def test_when_cgroups_are_writable_then_they_carry_the_limits(sandbox: BwrapSandbox, output_dir: Path) -> None:
    result, _, _ = run_script(sandbox, output_dir, "pass")
    if RLIMIT in result.limits.values():
        pytest.skip(f"NO WRITABLE CGROUP HIERARCHY HERE: limits fell back to rlimits ({dict(result.limits)})")
    assert set(result.limits.values()) <= {CGROUP_V1, CGROUP_V2}


def test_when_the_job_burns_cpu_then_the_cpu_limit_stops_it(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    while True:
        pass
    """
    result, _, _ = run_script(sandbox, output_dir, code, cpu_seconds=1, timeout_seconds=120)
    assert not result.timed_out
    assert result.signal in {signal.SIGXCPU, signal.SIGKILL}
    assert result.limits["cpu_seconds"] == RLIMIT


def test_when_the_job_runs_past_its_timeout_then_it_is_killed_with_its_children(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    token = f"warden-timeout-{os.getpid()}-{id(output_dir)}"
    code = f"""
    import subprocess, time
    # A child in its own session that ignores SIGTERM, and the job itself: both must die.
    subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "time.sleep(600)", {token!r}], start_new_session=True)
    print("started", flush=True)
    time.sleep(600)
    """
    result, stdout, _ = run_script(sandbox, output_dir, code, timeout_seconds=2)
    assert stdout == "started\n"
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert not result.ok
    survivors = []
    for entry in Path("/proc").iterdir():
        try:
            if token.encode() in (entry / "cmdline").read_bytes():
                survivors.append(entry.name)
        except OSError:
            continue
    assert survivors == []


# --- the filter, the command line and the spec ----------------------------------------------------------------


def test_when_the_filter_is_compiled_then_it_is_a_bpf_program() -> None:
    program = seccomp.compile_filter()
    assert program
    assert len(program) % 8 == 0  # struct sock_filter is 8 bytes


def test_when_the_rules_are_described_then_every_required_call_is_listed() -> None:
    described = dict(seccomp.describe())
    for name in ("socket", "ptrace", "mount", "umount2", "pivot_root", "unshare", "setns", "clone", "clone3", "bpf",
                 "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "setuid", "setgid",
                 "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups", "keyctl",
                 "add_key", "request_key", "perf_event_open", "userfaultfd", "open_by_handle_at", "reboot", "swapon",
                 "swapoff", "pidfd_getfd", "process_madvise"):  # fmt: skip
        assert name in described, name
    assert described["clone3"].startswith("ENOSYS")
    assert described["chmod"].startswith("EPERM when the mode sets S_ISUID")


def test_when_the_argv_is_built_then_it_has_every_hardening_flag(tmp_path: Path, data_dir: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    spec = SandboxSpec(command=["python3", "train.py"], output_dir=output, inputs=[(data_dir, "data")])
    argv = build_argv(spec, "/usr/bin/bwrap", 9, 10)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--clearenv"):  # fmt: skip
        assert flag in argv
    joined = " ".join(argv)
    assert "--cap-drop ALL" in joined
    assert "--uid 65534 --gid 65534" in joined
    assert f"--ro-bind {data_dir} /input/data" in joined
    assert f"--size {tmpfs_size(spec.output_bytes)} --tmpfs /output" in joined
    assert "--clearenv --args 10" in joined
    assert argv[argv.index("--seccomp") + 1 : argv.index("--seccomp") + 3] == ["9", "--"]
    assert argv[-2:] == ["python3", "train.py"]
    assert "--proc /proc --dev /dev" in joined
    # The root is remounted read-only after every mount point has been made in it.
    assert argv.index("--remount-ro") > max(i for i, arg in enumerate(argv) if arg in {"--bind", "--ro-bind"})
    assert "--bind" not in argv  # no host path is writable: /output is the sandbox's own tmpfs


def test_a_runtime_under_tmp_is_bound_after_the_private_tmp_is_mounted(tmp_path: Path) -> None:
    # A CI checkout under /tmp had its virtual environment hidden by the sandbox's own /tmp tmpfs.
    venv = tmp_path / "venv"  # pytest's tmp_path lies under /tmp
    venv.mkdir()
    spec = SandboxSpec(command=["true"], output_dir=tmp_path, extra_ro_paths=[venv])
    argv = build_argv(spec, "/usr/bin/bwrap", 9, 10)

    tmpfs = max(i for i, arg in enumerate(argv) if arg == "--tmpfs" and argv[i + 1] == "/tmp")  # noqa: S108
    bound = argv.index(str(venv))
    assert bound > tmpfs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"command": []}, "command"),
        ({"inputs": [(Path("/usr"), "../etc")]}, "input name"),
        ({"inputs": [(Path("/usr"), "a"), (Path("/bin"), "a")]}, "unique"),
        ({"inputs": [(Path("/nonexistent-warden"), "a")]}, "does not exist"),
        ({"uid": 0}, "unprivileged"),
        ({"memory_bytes": 0}, "memory"),
        ({"timeout_seconds": -1}, "timeout"),
        ({"tmp_bytes": 0}, "size of"),
        ({"env": {"BAD=KEY": "x"}}, "environment"),
        ({"extra_ro_paths": [Path("relative")]}, "absolute"),
    ],
)
def test_when_the_spec_is_invalid_then_it_is_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"command": ["true"], "output_dir": tmp_path, **change}
    with pytest.raises(InvalidArgument, match=message):
        SandboxSpec(**options)  # type: ignore[arg-type]


def test_when_the_output_dir_is_missing_then_the_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="output directory"):
        SandboxSpec(command=["true"], output_dir=tmp_path / "missing")


def test_when_bwrap_is_missing_then_the_sandbox_says_so(tmp_path: Path) -> None:
    missing = BwrapSandbox(bwrap=str(tmp_path / "no-bwrap"))
    assert not missing.available()
    assert "bubblewrap" in (missing.unavailable_reason() or "")
    with pytest.raises(SandboxUnavailable, match="not found"):
        missing.run(SandboxSpec(command=["true"], output_dir=tmp_path), Captured(), Captured())


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 system-call table only exists on x86_64")
def test_when_the_job_calls_through_the_x32_table_then_it_is_killed(sandbox: BwrapSandbox, output_dir: Path) -> None:
    # x32's mount (0x40000000 + 165) would slip past rules written for x86_64 numbers: the filter kills instead.
    code = """
    libc.syscall.restype = ctypes.c_long
    print("calling", flush=True)
    result = libc.syscall(0x40000000 + 165, b"none", b"/tmp", b"tmpfs", 0, 0)
    escaped(f"x32 mount returned {result}, errno {ctypes.get_errno()}")
    """
    result, stdout, _ = run_script(sandbox, output_dir, code)
    assert stdout == "calling\n"
    assert result.signal == signal.SIGSYS


# --- Landlock, the second layer -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def landlock() -> int:
    abi = landlock_abi()
    if abi == 0:
        pytest.skip("LANDLOCK LAYER NOT TESTED: this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock)")
    if not Path(LANDLOCK_PYTHON).exists():
        pytest.skip(f"LANDLOCK LAYER NOT TESTED: {LANDLOCK_PYTHON} is needed to run the trampoline")
    return abi


def test_when_the_kernel_has_landlock_then_the_job_runs_confined_by_it(
    sandbox: BwrapSandbox, output_dir: Path, landlock: int
) -> None:
    # The sandbox's init (pid 1) is outside the job's Landlock domain: without Landlock the job, having the
    # same uid, could inspect it and signal it; with Landlock it can do neither (signals need ABI 6).
    code = """
    refused("inspect the sandbox's init through /proc/1/root", lambda: os.listdir("/proc/1/root"))
    if abi >= 6:
        refused("signal the sandbox's init", lambda: os.kill(1, 0))
    open("/output/ok", "w").write("written")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, f"abi = {landlock}\n" + textwrap.dedent(code))
    assert_blocked(result, stdout, stderr, attempts=2 if landlock >= 6 else 1)
    assert result.landlock_abi == landlock
    assert LANDLOCK_TRAMPOLINE in result.argv
    assert (output_dir / "ok").read_text() == "written"


def test_when_landlock_is_off_then_the_job_runs_without_the_trampoline(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    os.listdir("/proc/1/root")  # what Landlock refuses above is allowed without it: the layer does the work
    os.kill(1, 0)
    print("plain")
    """
    result, stdout, stderr = run_script(sandbox, output_dir, code, landlock=False)
    assert result.ok, stderr
    assert stdout == "plain\n"
    assert result.landlock_abi == 0
    assert LANDLOCK_TRAMPOLINE not in result.argv


def test_when_the_trampoline_confines_a_process_then_only_its_paths_are_writable(
    tmp_path: Path, landlock: int, host_listener: tuple[int, list[object]]
) -> None:
    # The layer on its own, outside bwrap: what the mount namespace would allow, Landlock still refuses.
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    allowed.mkdir()
    denied.mkdir()
    port, accepted = host_listener
    job = f"""
import socket
open({str(allowed / "x")!r}, "w").write("ok")
for attempt in (lambda: open({str(denied / "x")!r}, "w"), lambda: socket.create_connection(("127.0.0.1", {port}))):
    try:
        attempt()
    except PermissionError:
        print("BLOCKED")
    else:
        print("ESCAPED")
"""
    done = subprocess.run(
        [LANDLOCK_PYTHON, "-I", "-S", "-c", LANDLOCK_TRAMPOLINE, str(allowed), "--", LANDLOCK_PYTHON, "-I", "-c", job],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = "BLOCKED\nBLOCKED\n" if landlock >= 4 else "BLOCKED\nESCAPED\n"  # TCP rules need ABI 4
    assert done.stdout == expected
    assert (allowed / "x").read_text() == "ok"
    assert not (denied / "x").exists()
    if landlock >= 4:
        assert accepted == []


# --- which cgroup hierarchy carries the limits (read from /proc, checked on fake trees) -----------------------


def fake_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(textwrap.dedent(mountinfo).lstrip())
    (proc / "cgroup").write_text(textwrap.dedent(cgroup).lstrip())
    return proc


def test_when_only_cgroup_v2_is_mounted_then_memory_max_and_pids_max_carry_the_limits(tmp_path: Path) -> None:
    mine = tmp_path / "cg2" / "user.slice" / "warden.service"
    mine.mkdir(parents=True)
    (mine / "cgroup.subtree_control").write_text("cpu memory pids\n")
    proc = fake_proc(
        tmp_path,
        f"30 23 0:26 / {tmp_path / 'cg2'} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        "0::/user.slice/warden.service\n",
    )
    limits = create_limits(64 * 1024**2, 32, 5, proc=proc)
    assert limits.mechanisms == {"memory": CGROUP_V2, "pids": CGROUP_V2, "cpu_seconds": RLIMIT}
    (job,) = {c.directory for c in limits.cgroups}  # one directory for both controllers
    assert job.parent == mine
    assert (job / "memory.max").read_text() == str(64 * 1024**2)
    assert (job / "memory.swap.max").exists() is False  # only written where the kernel offers it
    assert (job / "pids.max").read_text() == "32"


def test_when_cgroup_v1_is_mounted_inside_a_cgroup_namespace_then_the_paths_are_joined(tmp_path: Path) -> None:
    memory = tmp_path / "memory" / "job-host"
    memory.mkdir(parents=True)
    (memory / "memory.memsw.limit_in_bytes").write_text("max")
    (tmp_path / "pids").mkdir()
    proc = fake_proc(
        tmp_path,
        f"""
        40 31 0:30 /outer {tmp_path / "memory"} rw - cgroup cgroup rw,memory
        41 31 0:31 / {tmp_path / "pids"} rw - cgroup cgroup rw,pids
        """,
        """
        8:pids:/
        4:memory:/outer/job-host
        """,
    )
    limits = create_limits(128 * 1024**2, 16, None, proc=proc)
    assert limits.mechanisms == {"memory": CGROUP_V1, "pids": CGROUP_V1}
    by_controller = {c.controller: c.directory for c in limits.cgroups}
    assert by_controller["memory"].parent == memory
    assert (by_controller["memory"] / "memory.limit_in_bytes").read_text() == str(128 * 1024**2)
    assert by_controller["pids"].parent == tmp_path / "pids"
    assert (by_controller["pids"] / "pids.max").read_text() == "16"


@pytest.mark.parametrize("enabled", ["", "cpu io\n"])
def test_when_no_cgroup_can_carry_the_limits_then_rlimits_stand_in(tmp_path: Path, enabled: str) -> None:
    (tmp_path / "cg2").mkdir()
    (tmp_path / "cg2" / "cgroup.subtree_control").write_text(enabled)
    proc = fake_proc(tmp_path, f"30 23 0:26 / {tmp_path / 'cg2'} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    pids = None if os.geteuid() == 0 else 32  # root gets no RLIMIT_NPROC fallback (refused: see above)
    limits = create_limits(64 * 1024**2, pids, 5, proc=proc)
    assert limits.cgroups == []
    expected = {"memory": RLIMIT, "cpu_seconds": RLIMIT} | ({} if pids is None else {"pids": RLIMIT})
    assert limits.mechanisms == expected
    assert sorted(p.name for p in (tmp_path / "cg2").iterdir()) == ["cgroup.subtree_control"]
