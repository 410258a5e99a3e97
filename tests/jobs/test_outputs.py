"""The job's output and logs under attack: sizes bounded while they are written, no link or special file released.

Each hostile job runs for real in the bwrap sandbox. A job that would otherwise run on (it sleeps after writing)
shows the limit stopped it: it ends ``limit_exceeded`` long before its timeout, which is never reached.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from warden.jobs.outputs import OutputArea, remove_specials, tmpfs_size
from warden.jobs.sandbox import BwrapSandbox, SandboxResult, SandboxSpec

PYTHON = "/usr/bin/python3"
MiB = 1024**2


@pytest.fixture(scope="module")
def sandbox() -> BwrapSandbox:
    candidate = BwrapSandbox()
    reason = candidate.unavailable_reason()
    if reason is not None or not Path(PYTHON).exists():
        pytest.skip(f"OUTPUT LIMIT SUITE NOT RUN: {reason or PYTHON + ' is missing'}")
    return candidate


def run(sandbox: BwrapSandbox, output_dir: Path, code: str, **options: object) -> tuple[SandboxResult, bytes, bytes]:
    out: list[bytes] = []
    err: list[bytes] = []
    options.setdefault("timeout_seconds", 120.0)
    spec = SandboxSpec(command=[PYTHON, "-I", "-c", textwrap.dedent(code)], output_dir=output_dir, **options)  # type: ignore[arg-type]
    result = sandbox.run(spec, out.append, err.append)
    return result, b"".join(out), b"".join(err)


def released_bytes(output_dir: Path) -> int:
    return sum(os.lstat(Path(root) / name).st_size for root, _, files in os.walk(output_dir) for name in files)


def host_entries(output_dir: Path) -> dict[str, str]:
    """Every entry of the released output with its kind, seen without following anything."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(output_dir):
        for name in dirs + files:
            mode = os.lstat(Path(root) / name).st_mode
            kind = "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"
            found[str((Path(root) / name).relative_to(output_dir))] = kind
    return found


# --- output size ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            """
            import time
            with open("/output/big", "wb") as f:
                try:
                    for _ in range(1024):
                        f.write(b"x" * (1 << 20))
                except OSError:
                    pass
            time.sleep(100)
            """,
            id="one-1GiB-file",
        ),
        pytest.param(
            """
            import time
            for i in range(1024):
                try:
                    open(f"/output/part{i}", "wb").write(b"x" * (1 << 20))
                except OSError:
                    pass
            time.sleep(100)
            """,
            id="many-1MiB-files",
        ),
    ],
)
def test_when_the_job_writes_past_its_output_limit_then_it_is_stopped_and_the_host_keeps_at_most_the_limit(
    sandbox: BwrapSandbox, output_dir: Path, code: str
) -> None:
    # Found by a hostile job: /output was a host directory; a 1 GiB file (or many files) all landed on the host.
    result, _, _ = run(sandbox, output_dir, code, output_bytes=8 * MiB)

    assert result.limit_exceeded == "output_bytes"
    assert not result.timed_out
    assert not result.ok
    assert released_bytes(output_dir) <= 8 * MiB


def test_when_the_job_makes_more_entries_than_allowed_then_it_is_stopped(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    code = """
    import time
    for i in range(5000):
        open(f"/output/f{i}", "w").close()
    time.sleep(100)
    """
    result, _, _ = run(sandbox, output_dir, code, output_entries=100)

    assert result.limit_exceeded == "output_files"
    assert not result.timed_out
    assert len(host_entries(output_dir)) <= 5000


def test_when_the_job_leaves_a_sparse_file_bigger_than_the_limit_then_it_is_not_released(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    # A sparse file takes no room in the tmpfs; copied out naively it would be 10 GiB of zeros on the host.
    code = """
    with open("/output/sparse", "wb") as f:
        f.truncate(10 * 1024**3)
    open("/output/small", "w").write("kept")
    """
    result, _, _ = run(sandbox, output_dir, code, output_bytes=8 * MiB)

    assert result.limit_exceeded == "output_bytes"
    assert host_entries(output_dir) == {"small": "file"}
    [withheld] = result.withheld
    assert (withheld.path, withheld.kind, withheld.reason) == ("sparse", "file", "past the output limit")


def test_a_job_within_its_limits_releases_everything_it_wrote(sandbox: BwrapSandbox, output_dir: Path) -> None:
    code = """
    import os
    os.makedirs("/output/model/epoch1")
    open("/output/model/epoch1/weights.bin", "wb").write(b"w" * 3000)
    open("/output/run.sh", "w").write("#!/bin/sh\\n")
    os.chmod("/output/run.sh", 0o755)
    os.chmod("/output/model/epoch1/weights.bin", 0)  # the job takes its own read access away: still released
    """
    result, _, err = run(sandbox, output_dir, code, output_bytes=8 * MiB)

    assert result.ok, err
    assert result.withheld == ()
    assert host_entries(output_dir) == {
        "model": "dir", "model/epoch1": "dir", "model/epoch1/weights.bin": "file", "run.sh": "file",
    }  # fmt: skip
    assert (output_dir / "model" / "epoch1" / "weights.bin").read_bytes() == b"w" * 3000
    assert (output_dir / "run.sh").stat().st_mode & 0o777 == 0o755


def test_the_tmpfs_is_one_page_above_the_limit_so_passing_it_shows_before_enospc() -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    assert tmpfs_size(1) == 2 * page
    assert tmpfs_size(page) == 2 * page
    assert tmpfs_size(page + 1) == 3 * page


# --- logs -------------------------------------------------------------------------------------------------------


def test_when_the_job_floods_its_logs_then_only_the_limit_is_kept_and_the_job_is_stopped(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    # Found by a hostile job: 300 MiB of stdout were all kept on the host and echoed.
    code = """
    import sys, time
    block = b"y" * 65536
    for _ in range(300 * 16):
        sys.stdout.buffer.write(block)
        sys.stderr.buffer.write(b"e" * 100)
    sys.stdout.flush()
    time.sleep(100)
    """
    result, out, err = run(sandbox, output_dir, code, log_bytes=1 * MiB)

    assert result.limit_exceeded == "log_bytes"
    assert not result.timed_out
    assert len(out) + len(err) == 1 * MiB  # stdout and stderr together, cut at the byte
    assert set(out) <= {ord("y")}


def test_a_job_within_its_log_limit_keeps_every_byte(sandbox: BwrapSandbox, output_dir: Path) -> None:
    result, out, _ = run(sandbox, output_dir, "print('x' * 999)", log_bytes=1000)
    assert result.ok
    assert out == b"x" * 999 + b"\n"


# --- links and special files ------------------------------------------------------------------------------------


def test_when_the_job_leaves_links_and_special_files_then_none_reaches_the_host(
    sandbox: BwrapSandbox, output_dir: Path
) -> None:
    # Found by a hostile job: /output/x -> /etc/shadow stayed in the output for whoever opened it next.
    code = """
    import os, socket
    open("/output/model.txt", "w").write("weights")
    os.symlink("/etc/passwd", "/output/passwd")
    os.symlink("../../", "/output/up")
    os.symlink("model.txt", "/output/sibling")
    os.mkdir("/output/sub")
    os.symlink("/home", "/output/sub/home")
    os.mkfifo("/output/pipe")
    socket.socket(socket.AF_UNIX).bind("/output/sock")
    os.link("/output/model.txt", "/output/sub/hard")
    """
    result, _, err = run(sandbox, output_dir, code)

    assert result.exit_code == 0, err
    assert host_entries(output_dir) == {"model.txt": "file", "sub": "dir"}
    withheld = {w.path: (w.kind, w.target) for w in result.withheld}
    assert withheld == {
        "passwd": ("link", "/etc/passwd"),
        "up": ("link", "../../"),
        "sibling": ("link", "model.txt"),
        "sub/home": ("link", "/home"),
        "pipe": ("fifo", None),
        "sock": ("socket", None),
        "sub/hard": ("hardlink", "model.txt"),
    }


def test_a_host_output_directory_loses_its_links_and_special_files(tmp_path: Path) -> None:
    # The container backends bind a host directory at /output: what the job left there is cleaned after the run.
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "model.txt").write_text("weights")
    os.symlink("/etc/passwd", out / "passwd")
    os.symlink("../../", out / "sub" / "up")
    os.mkfifo(out / "pipe")
    os.link(out / "model.txt", out / "sub" / "hard")

    withheld = {w.path: (w.kind, w.target) for w in remove_specials(out)}

    assert withheld == {
        "passwd": ("link", "/etc/passwd"),
        "sub/up": ("link", "../../"),
        "pipe": ("fifo", None),
        "sub/hard": ("hardlink", "model.txt"),
    }
    assert host_entries(out) == {"model.txt": "file", "sub": "dir"}
    assert Path("/etc/passwd").exists()  # removed the link, not what it pointed at


def test_an_area_past_its_limits_says_which(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        usage = os.fstatvfs(fd)
        used = (usage.f_blocks - usage.f_bfree) * usage.f_frsize
        assert OutputArea(fd, used + 1024**3, 10**12).exceeded() is None
        assert OutputArea(fd, max(used - 1, 1), 10**12).exceeded() == "output_bytes"
    finally:
        os.close(fd)
