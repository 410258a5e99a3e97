"""The bwrap command line of one job, built from its :class:`~warden.jobs.sandbox.SandboxSpec` without running it.

:func:`build_argv` is the whole argv (see :mod:`warden.jobs.sandbox` for what each part is for); :func:`env_args`
the environment bwrap reads from ``--args FD``. Both are pure: the same spec gives the same bytes, so the tests
pin them argument by argument.

A job with GPUs (:class:`GpuMounts`, built by :meth:`warden.jobs.gpu_driver.GpuHost.mounts`) adds, and only
then:

- ``--ro-bind LIB LIB`` for each driver library not already under a bound runtime path (on Debian and most
  distributions they are under ``/usr``, bound whole and read-only, so nothing is added), after the runtime;
- ``--dev-bind NODE NODE`` for the job's own ``/dev/nvidiaN`` (for a MIG device, its GPU's node and the two
  ``/dev/nvidia-caps/nvidia-capN`` of its GPU and compute instance), then the control nodes ``/dev/nvidiactl``,
  ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools`` and ``/dev/nvidia-modeset`` where they exist, right after the
  sandbox's minimal ``/dev`` is made (``--dev-bind``, not ``--bind``, which would mount them ``nodev``). No other
  GPU's node exists in the sandbox, so opening one fails whatever the job names;
- ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` set to the devices' UUIDs (``GPU-…``, ``MIG-…``),
  through ``--args`` like every variable. UUIDs, not indexes renumbered from 0: a UUID names one device whatever
  order CUDA enumerates in (its default, fastest first, is not ``nvidia-smi``'s PCI order) and however the driver
  counts devices whose node is missing, and a MIG device can only be named by its UUID.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from warden.jobs.landlock import LANDLOCK_PYTHON, LANDLOCK_TRAMPOLINE, landlock_abi
from warden.jobs.outputs import tmpfs_size

if TYPE_CHECKING:
    from warden.jobs.sandbox import SandboxSpec

__all__ = ["GpuMounts", "build_argv", "env_args", "gpu_device_args", "gpu_library_args", "runtime_args"]

_SCRATCH: Final = ("/tmp", "/dev/shm")  # noqa: S108 - private tmpfs inside the sandbox, not the host's


@dataclass(frozen=True)
class GpuMounts:
    """What a GPU job's sandbox gets: device nodes and libraries as ``(host path, path inside)``, and variables."""

    devices: tuple[tuple[Path, str], ...]
    libraries: tuple[tuple[Path, str], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def runtime_args(paths: Sequence[Path]) -> list[str]:
    """bwrap arguments recreating each existing runtime path: a link as a link, anything else bound read-only."""
    args: list[str] = []
    for path in paths:
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def gpu_library_args(gpu: GpuMounts | None) -> list[str]:
    """``--ro-bind`` for each driver library the job needs beyond its runtime paths."""
    args: list[str] = []
    for host, inside in gpu.libraries if gpu is not None else ():
        args += ["--ro-bind", str(host), inside]
    return args


def gpu_device_args(gpu: GpuMounts | None) -> list[str]:
    """``--dev-bind`` for the job's device nodes and the driver's control nodes, in the order given."""
    args: list[str] = []
    for host, inside in gpu.devices if gpu is not None else ():
        args += ["--dev-bind", str(host), inside]
    return args


def landlock_wrapper(spec: SandboxSpec) -> list[str]:
    """The trampoline that confines the job with Landlock before exec; empty when that layer is off or impossible."""
    runtime = {Path(p) for p in spec.runtime_paths}
    if not spec.landlock or landlock_abi() == 0 or Path("/usr") not in runtime or not Path(LANDLOCK_PYTHON).exists():
        return []
    return [LANDLOCK_PYTHON, "-I", "-S", "-c", LANDLOCK_TRAMPOLINE, "/output", "/tmp", "/dev/shm", "--"]  # noqa: S108


def env_args(spec: SandboxSpec, gpu: GpuMounts | None = None) -> bytes:
    """The job's environment as bwrap options for ``--args FD``: NUL-separated ``--setenv KEY VALUE`` triples,
    the spec's own variables and then those naming its GPUs."""
    env = {**spec.environment(), **(gpu.env if gpu is not None else {})}
    return b"".join(b"--setenv\0%s\0%s\0" % (k.encode(), v.encode()) for k, v in env.items())


def build_argv(
    spec: SandboxSpec, bwrap: str, seccomp_fd: int, env_fd: int, *, info_fd: int | None = None,
    block_fd: int | None = None, gpu: GpuMounts | None = None,
) -> list[str]:  # fmt: skip
    """The exact bwrap command line for ``spec``: the seccomp program from ``seccomp_fd``, the environment from
    ``env_fd`` (:func:`env_args`), where given the ``--info-fd`` and ``--block-fd`` :class:`OutputArea` needs, and
    the job's GPU devices and libraries (``gpu``; without it the argv is the same as before GPUs existed)."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(spec.uid),
        "--gid",
        str(spec.gid),
        "--hostname",
        spec.hostname,
    ]
    paths = [Path(p) for p in (*spec.runtime_paths, *spec.extra_ro_paths)]
    # A runtime under /tmp (a virtual environment in a CI checkout there) is bound after the private /tmp is
    # mounted, or the tmpfs would hide it.
    late = [p for p in paths if any(p.is_relative_to(scratch) for scratch in _SCRATCH)]
    argv += runtime_args([p for p in paths if p not in late])
    argv += gpu_library_args(gpu)
    argv += ["--proc", "/proc", "--dev", "/dev", *gpu_device_args(gpu)]
    for scratch in _SCRATCH:
        argv += ["--size", str(spec.tmp_bytes), "--tmpfs", scratch]
    argv += runtime_args(late)
    for host, name in spec.inputs:
        argv += ["--ro-bind", str(Path(host).resolve()), f"/input/{name}"]
    argv += ["--size", str(tmpfs_size(spec.output_bytes)), "--tmpfs", "/output", "--chdir", "/output"]
    # /proc read-only: bwrap leaves /proc/sys writable, and a job whose uid maps to host root could write host
    # sysctls such as kernel.core_pattern through it. Then the root itself, once every mount point exists.
    argv += ["--remount-ro", "/proc", "--remount-ro", "/dev", "--remount-ro", "/", "--clearenv", "--args", str(env_fd)]
    for option, fd in (("--info-fd", info_fd), ("--block-fd", block_fd)):
        if fd is not None:
            argv += [option, str(fd)]
    argv += ["--seccomp", str(seccomp_fd), "--", *landlock_wrapper(spec), *spec.command]
    return argv
