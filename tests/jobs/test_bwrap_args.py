"""The bwrap command line, argument by argument: a job without GPUs gets exactly the argv it always got."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warden.jobs.bwrap_args import GpuMounts, gpu_device_args, gpu_library_args
from warden.jobs.gpu_driver import GpuHost, GpuInfo
from warden.jobs.gpus import GpuDevice, GpuKind, ReservedGpuEnv
from warden.jobs.outputs import tmpfs_size
from warden.jobs.sandbox import BwrapSandbox, SandboxSpec, build_argv, env_args

MiB = 1024**2
PYTHON = "/usr/bin/python3"


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


# --- a job with GPUs ----------------------------------------------------------------------------------------------

U3 = "GPU-33333333-3333-4333-8333-333333333333"
GPU3 = GpuDevice("1", GpuKind.INDEX)  # NVML's index 1 is the GPU whose node is /dev/nvidia3
INVENTORY = (GpuInfo(0, "GPU-00000000-0000-4000-8000-000000000000", 0), GpuInfo(1, U3, 3))


def gpu_mounts(root: Path) -> GpuMounts:
    return GpuMounts(
        devices=((root / "dev/nvidia3", "/dev/nvidia3"), (root / "dev/nvidiactl", "/dev/nvidiactl")),
        libraries=((root / "opt/nvidia/libcuda.so.1", "/opt/nvidia/libcuda.so.1"),),
        env={"CUDA_VISIBLE_DEVICES": U3, "NVIDIA_VISIBLE_DEVICES": U3},
    )


def test_when_the_job_has_a_gpu_then_its_nodes_are_dev_bound_after_dev_and_its_libraries_bound_read_only(
    spec: SandboxSpec, tmp_path: Path
) -> None:
    root = tmp_path / "host"
    without = build_argv(spec, "/usr/bin/bwrap", 9, 10, info_fd=11, block_fd=12)

    argv = build_argv(spec, "/usr/bin/bwrap", 9, 10, info_fd=11, block_fd=12, gpu=gpu_mounts(root))

    library = ["--ro-bind", str(root / "opt/nvidia/libcuda.so.1"), "/opt/nvidia/libcuda.so.1"]
    nodes = ["--dev-bind", str(root / "dev/nvidia3"), "/dev/nvidia3"]
    nodes += ["--dev-bind", str(root / "dev/nvidiactl"), "/dev/nvidiactl"]
    at = without.index("--proc")
    assert argv == [*without[:at], *library, "--proc", "/proc", "--dev", "/dev", *nodes, *without[at + 4 :]]
    assert "--bind" not in argv  # a plain bind is nodev: the nodes would not open; and nothing else is writable


def test_when_the_job_has_a_gpu_then_its_environment_names_its_devices_by_uuid(
    spec: SandboxSpec, tmp_path: Path
) -> None:
    assert env_args(spec, gpu_mounts(tmp_path)) == env_args(spec) + (
        f"--setenv\0CUDA_VISIBLE_DEVICES\0{U3}\0--setenv\0NVIDIA_VISIBLE_DEVICES\0{U3}\0".encode()
    )


def test_when_no_device_is_leased_then_the_gpu_arguments_are_empty() -> None:
    assert gpu_device_args(None) == gpu_library_args(None) == []
    assert gpu_device_args(GpuMounts(devices=())) == []


@pytest.mark.parametrize("name", ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"])
def test_a_spec_that_sets_the_gpu_variables_itself_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ReservedGpuEnv, match=name):
        SandboxSpec(command=["true"], output_dir=tmp_path, env={name: "all"})


_LIST_DEVICES = """
import os
print(sorted(n for n in os.listdir("/dev") if n.startswith("nvidia")))
print(os.environ["CUDA_VISIBLE_DEVICES"], os.environ["NVIDIA_VISIBLE_DEVICES"])
print(open("/dev/nvidia3").read(), open("/dev/nvidiactl").read())
for other in ("/dev/nvidia0", "/dev/nvidia1"):
    try:
        open(other)
    except FileNotFoundError:
        print("absent", other)
"""


def test_a_real_sandbox_shows_the_job_only_its_own_gpu_node_and_the_control_nodes(tmp_path: Path) -> None:
    # No GPU here: regular files stand in for the nodes, which bwrap binds the same way as a character device.
    sandbox = BwrapSandbox(gpu_host=GpuHost(host := tmp_path / "host", nvml=lambda: INVENTORY))
    if not sandbox.available() or not Path(PYTHON).exists():
        pytest.skip(f"GPU SANDBOX RUN NOT TESTED: {sandbox.unavailable_reason() or PYTHON + ' is missing'}")
    for node, text in (("nvidia0", "gpu0"), ("nvidia1", "gpu1"), ("nvidia3", "gpu3"), ("nvidiactl", "ctl")):
        (host / "dev").mkdir(parents=True, exist_ok=True)
        (host / "dev" / node).write_text(text)
    (tmp_path / "out").mkdir()
    spec = SandboxSpec(command=[PYTHON, "-I", "-c", _LIST_DEVICES], output_dir=tmp_path / "out", gpus=[GPU3])
    out: list[bytes] = []

    result = sandbox.run(spec, out.append, out.append)

    assert result.exit_code == 0, b"".join(out).decode()
    assert b"".join(out).decode().splitlines() == [
        "['nvidia3', 'nvidiactl']",
        f"{U3} {U3}",
        "gpu3 ctl",
        "absent /dev/nvidia0",
        "absent /dev/nvidia1",
    ]
    assert result.argv[result.argv.index("--dev-bind") + 1 : result.argv.index("--dev-bind") + 3] == (
        str(host / "dev/nvidia3"),
        "/dev/nvidia3",
    )
