"""The bwrap command line, argument by argument: a job without GPUs gets exactly the argv it always got."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warden.jobs.outputs import tmpfs_size
from warden.jobs.sandbox import SandboxSpec, build_argv, env_args

MiB = 1024**2


@pytest.fixture
def spec(tmp_path: Path) -> SandboxSpec:
    """A spec touching every part of the argv: a bound runtime, a link, a missing path, a runtime under /tmp."""
    (tmp_path / "venv").mkdir()
    os.symlink("usr/bin", tmp_path / "bin")
    (tmp_path / "out").mkdir()
    (tmp_path / "data.csv").write_text("amount\n1\n")
    return SandboxSpec(
        command=["python3", "train.py"],
        output_dir=tmp_path / "out",
        inputs=[(tmp_path / "data.csv", "data")],
        env={"EPOCHS": "3"},
        runtime_paths=[Path("/usr"), tmp_path / "bin", tmp_path / "missing"],
        extra_ro_paths=[tmp_path / "venv"],
        landlock=False,
        memory_bytes=1024**3,
    )


def test_when_the_job_has_no_gpu_then_the_argv_is_exactly_the_one_it_always_was(
    spec: SandboxSpec, tmp_path: Path
) -> None:
    # Written before GPUs reached the sandbox, against the argv of that time: it must never change for them.
    argv = build_argv(spec, "/usr/bin/bwrap", 9, 10, info_fd=11, block_fd=12)

    assert argv == [
        "/usr/bin/bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
        "--new-session", "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "warden-job",
        "--ro-bind", "/usr", "/usr",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(256 * MiB), "--tmpfs", "/tmp", "--size", str(256 * MiB), "--tmpfs", "/dev/shm",  # noqa: S108
        "--symlink", "usr/bin", str(tmp_path / "bin"), "--ro-bind", str(tmp_path / "venv"), str(tmp_path / "venv"),
        "--ro-bind", str(tmp_path / "data.csv"), "/input/data",
        "--size", str(tmpfs_size(1024**3)), "--tmpfs", "/output", "--chdir", "/output",
        "--remount-ro", "/proc", "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv", "--args", "10",
        "--info-fd", "11", "--block-fd", "12", "--seccomp", "9", "--", "python3", "train.py",
    ]  # fmt: skip


def test_when_the_job_has_no_gpu_then_its_environment_is_exactly_the_one_it_always_was(spec: SandboxSpec) -> None:
    assert env_args(spec) == (
        b"--setenv\0PATH\0/usr/local/bin:/usr/bin:/bin\0--setenv\0HOME\0/tmp\0--setenv\0LANG\0C.UTF-8\0"
        b"--setenv\0EPOCHS\x003\0"
    )
