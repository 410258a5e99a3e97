"""The host's NVIDIA driver read below a directory of stand-ins and through a fake NVML: no GPU needed."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from warden.jobs.bwrap_args import GpuMounts
from warden.jobs.gpu_driver import (
    GpuHost,
    GpuInfo,
    MigInfo,
    NvmlUnavailable,
    ResolvedGpu,
    cdi_gpu_names,
    check_distinct,
    control_nodes,
    discover_gpus,
    driver_libraries,
    gpu_pool,
    mig_minors,
    nvml_inventory,
    procfs_inventory,
    resolve,
)
from warden.jobs.gpus import GpuDevice, GpuKind, GpuListProblem, GpuUnavailable, InvalidGpuList, parse_gpu_list

U0 = "GPU-00000000-0000-4000-8000-000000000000"
U1 = "GPU-11111111-1111-4111-8111-111111111111"
M0 = "MIG-aaaaaaaa-0000-4000-8000-000000000000"
M1 = "MIG-bbbbbbbb-0000-4000-8000-000000000000"


class FakeNvmlError(Exception):
    """Stands in for ``pynvml.NVMLError``."""


@dataclass
class FakeGpu:
    uuid: str
    minor: int
    mig: list[tuple[str, int, int]] | None = None  # None: no MIG support; []: MIG capable, mode off
    migs: dict[int, Any] = field(default_factory=dict)


@dataclass
class FakeMig:
    uuid: str
    gi: int
    ci: int


class FakeNvml:
    """The part of ``pynvml`` Warden calls, answering like the real one (UUIDs as bytes, as older releases did)."""

    NVMLError = FakeNvmlError

    def __init__(self, gpus: list[FakeGpu], *, init_error: bool = False) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.open = 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.init_error:
            raise FakeNvmlError("Driver Not Loaded")
        self.open += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:  # noqa: N802
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMig) -> bytes:  # noqa: N802
        return handle.uuid.encode()

    def nvmlDeviceGetMinorNumber(self, handle: FakeGpu) -> int:  # noqa: N802
        return handle.minor

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:  # noqa: N802
        if handle.mig is None:
            raise FakeNvmlError("Not Supported")
        return [1 if handle.mig else 0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:  # noqa: N802
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, slot: int) -> FakeMig:  # noqa: N802
        if handle.mig is None or slot >= len(handle.mig):
            raise FakeNvmlError("Not Found")
        return FakeMig(*handle.mig[slot])

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeMig) -> int:  # noqa: N802
        return handle.gi

    def nvmlDeviceGetComputeInstanceId(self, handle: FakeMig) -> int:  # noqa: N802
        return handle.ci


def two_gpus_one_in_mig_mode() -> FakeNvml:
    return FakeNvml([FakeGpu(U0.upper(), 0, None), FakeGpu(U1, 3, [(M0, 1, 0), (M1, 2, 0)])])


INVENTORY = (GpuInfo(0, U0, 0), GpuInfo(1, U1, 3, (MigInfo(M0, 1, 0), MigInfo(M1, 2, 0)), mig_mode=True))
MINORS = {"gpu3/gi1/access": 21, "gpu3/gi1/ci0/access": 22, "gpu3/gi2/access": 30, "gpu3/gi2/ci0/access": 31}


def device(name: str) -> GpuDevice:
    return parse_gpu_list(name).devices[0]


# --- NVML -----------------------------------------------------------------------------------------------------------


def test_nvml_lists_each_gpu_with_its_minor_and_its_mig_devices_and_is_shut_down_after() -> None:
    nvml = two_gpus_one_in_mig_mode()

    assert nvml_inventory(nvml) == INVENTORY
    assert nvml.open == 0


def test_without_the_package_or_the_driver_nvml_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    with pytest.raises(NvmlUnavailable, match=r"nvidia-ml-py is not installed \(pip install nvidia-ml-py\)"):
        nvml_inventory()
    with pytest.raises(NvmlUnavailable, match=r"Driver Not Loaded.*NVIDIA driver"):
        nvml_inventory(FakeNvml([], init_error=True))


def test_auto_discovers_whole_gpus_by_uuid_and_gpus_in_mig_mode_as_their_mig_devices() -> None:
    found = discover_gpus(lambda: nvml_inventory(two_gpus_one_in_mig_mode()))
    assert [(d.id, d.kind) for d in found.devices] == [
        (U0, GpuKind.GPU_UUID),
        (M0, GpuKind.MIG_UUID),
        (M1, GpuKind.MIG_UUID),
    ]
    assert found.note is None


def test_auto_without_nvml_is_no_gpu_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    found = discover_gpus()
    assert found.devices == ()
    assert found.note == "WARDEN_JOB_GPUS=auto found no GPU: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    assert discover_gpus(lambda: ()).note == "WARDEN_JOB_GPUS=auto found no GPU: NVML lists none"


# --- the driver's files -------------------------------------------------------------------------------------------


def write(root: Path, relative: str, text: str = "") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_procfs_lists_the_gpus_in_pci_order_with_minor_and_uuid(tmp_path: Path) -> None:
    gpus = "proc/driver/nvidia/gpus"
    write(tmp_path, f"{gpus}/0000:41:00.0/information", f"Model:  A100\nGPU UUID: \t {U1.upper()}\nDevice Minor: 1\n")
    write(tmp_path, f"{gpus}/0000:01:00.0/information", f"Model:  A100\nGPU UUID: \t {U0}\nDevice Minor: 0\n")
    write(tmp_path, f"{gpus}/0000:81:00.0/information", "Model:  A100\nGPU UUID: \t ??\nDevice Minor: 2\n")

    assert procfs_inventory(tmp_path) == (GpuInfo(0, U0, 0), GpuInfo(1, U1, 1), GpuInfo(2, None, 2))
    assert procfs_inventory(tmp_path / "nothing") == ()


def test_the_mig_minors_file_maps_each_capability_to_its_node() -> None:
    text = "config 1\nmonitor 2\ngpu3/gi1/access 21\ngpu3/gi1/ci0/access 22\nbroken line\n"
    assert mig_minors(text) == {"config": 1, "monitor": 2, "gpu3/gi1/access": 21, "gpu3/gi1/ci0/access": 22}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0", ResolvedGpu(device("0"), U0, 0)),
        (U0, ResolvedGpu(device(U0), U0, 0)),
        (M1, ResolvedGpu(device(M1), M1, 3, (30, 31))),
        (f"MIG-{U1}/1/0", ResolvedGpu(device(f"MIG-{U1}/1/0"), f"MIG-{U1}/1/0", 3, (21, 22))),
    ],
)
def test_a_device_resolves_to_its_uuid_its_node_and_its_mig_capabilities(name: str, expected: ResolvedGpu) -> None:
    assert resolve([device(name)], INVENTORY, MINORS) == (expected,)


@pytest.mark.parametrize(
    ("name", "inventory", "minors", "needle"),
    [
        ("2", INVENTORY, MINORS, "unresolved: GPU 2: the driver lists no such GPU"),
        (U1.replace("1", "2"), INVENTORY, MINORS, "unresolved: GPU GPU-2222"),
        ("0", (GpuInfo(0, None, 0),), MINORS, "unresolved: GPU 0: the driver does not say its UUID"),
        ("1", INVENTORY, MINORS, "mig_mode: GPU 1 is in MIG mode: list its MIG devices instead"),
        (M0, (GpuInfo(1, U1, 3),), MINORS, "unresolved: GPU MIG-aaaa"),
        (M0, INVENTORY, {}, "mig-minors has no gpu3/gi1/access, gpu3/gi1/ci0/access"),
    ],
)
def test_a_device_the_driver_cannot_place_is_refused_never_guessed(
    name: str, inventory: tuple[GpuInfo, ...], minors: dict[str, int], needle: str
) -> None:
    with pytest.raises(GpuUnavailable, match=needle) as caught:
        resolve([device(name)], inventory, minors)
    assert caught.value.code == "gpu_unavailable"


@pytest.mark.parametrize(
    ("text", "clash"),
    [(f"0,{U0}", U0), (f"{U1},{M0}", M0), (f"{M1},1", "1"), (f"{M1},{U1.upper()}", U1), (f"MIG-{U1}/1/0,{U1}", U1)],
)
def test_one_gpu_under_two_names_or_beside_its_mig_devices_is_a_duplicate(text: str, clash: str) -> None:
    with pytest.raises(InvalidGpuList) as caught:
        check_distinct(parse_gpu_list(text).devices, INVENTORY)
    assert (caught.value.problem, caught.value.entry) == (GpuListProblem.DUPLICATE, clash)


def test_mig_devices_of_one_gpu_and_names_the_driver_does_not_know_are_distinct() -> None:
    check_distinct(parse_gpu_list(f"{M0},{M1},0,7").devices, INVENTORY)


def test_control_nodes_are_those_that_exist(tmp_path: Path) -> None:
    write(tmp_path, "dev/nvidiactl")
    write(tmp_path, "dev/nvidia-uvm")
    assert control_nodes(tmp_path) == ("/dev/nvidiactl", "/dev/nvidia-uvm")


def test_driver_libraries_are_found_in_the_standard_directories_and_where_the_linker_cache_says(
    tmp_path: Path,
) -> None:
    lib = "usr/lib/x86_64-linux-gnu"
    write(tmp_path, f"{lib}/libcuda.so.550.54.15")
    os.symlink("libcuda.so.550.54.15", tmp_path / lib / "libcuda.so.1")
    write(tmp_path, f"{lib}/libnvidia-ml.so.550.54.15")
    write(tmp_path, f"{lib}/libc.so.6")
    write(tmp_path, f"{lib}/libcudart.so.12")  # the CUDA runtime belongs to the job's environment, not the driver
    write(tmp_path, "opt/nvidia/lib/libnvidia-ptxjitcompiler.so.550.54.15")
    os.symlink("usr/lib", tmp_path / "lib")  # merged /usr: the same files under a second name
    cache = b"glibc-ld.so.cache1.1\0libnvidia-ptxjitcompiler.so.1\0/opt/nvidia/lib/libnvidia-ptxjitcompiler.so.1\0"
    write(tmp_path, "etc/ld.so.cache").write_bytes(cache)

    assert driver_libraries(tmp_path) == (
        f"/{lib}/libcuda.so.1",
        f"/{lib}/libnvidia-ml.so.550.54.15",
        "/opt/nvidia/lib/libnvidia-ptxjitcompiler.so.550.54.15",
    )


def test_a_cdi_spec_for_nvidia_gpus_lists_its_device_names(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    write(etc, "nvidia.yaml", "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n- name: all\n")
    write(run, "nvidia-uuid.json", json.dumps({"kind": "nvidia.com/gpu", "devices": [{"name": U0}]}))
    write(run, "other.yaml", "kind: vendor.example/fpga\ndevices:\n- name: '9'\n")
    write(run, "broken.yaml", "kind: [unclosed\n")

    assert cdi_gpu_names([etc, run]) == {"0", "all", U0}
    assert cdi_gpu_names([run / "nothing", tmp_path]) is None


# --- a host's mounts ----------------------------------------------------------------------------------------------


def gpu_root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    for node in ("nvidia0", "nvidia3", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-caps/nvidia-cap30"):
        write(root, f"dev/{node}")
    for cap in (21, 22, 31):
        write(root, f"dev/nvidia-caps/nvidia-cap{cap}")
    write(root, "proc/driver/nvidia-caps/mig-minors", "".join(f"{k} {v}\n" for k, v in MINORS.items()))
    write(root, "usr/lib/x86_64-linux-gnu/libcuda.so.1")
    write(root, "usr/local/nvidia/lib64/libnvidia-ml.so.1")
    return root


def test_a_host_mounts_only_the_job_s_nodes_the_control_nodes_and_the_libraries_not_bound_yet(tmp_path: Path) -> None:
    root = gpu_root(tmp_path)
    host = GpuHost(root, nvml=lambda: INVENTORY)

    mounts = host.mounts([device(U0), device(M1)], covered=[Path("/usr/lib")])

    assert mounts == GpuMounts(
        devices=tuple(
            (root / node[1:], node)
            for node in (
                "/dev/nvidia0",
                "/dev/nvidia3",
                "/dev/nvidia-caps/nvidia-cap30",
                "/dev/nvidia-caps/nvidia-cap31",
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
            )
        ),
        libraries=((root / "usr/local/nvidia/lib64/libnvidia-ml.so.1", "/usr/local/nvidia/lib64/libnvidia-ml.so.1"),),
        env={"CUDA_VISIBLE_DEVICES": f"{U0},{M1}", "NVIDIA_VISIBLE_DEVICES": f"{U0},{M1}"},
    )


def test_without_nvml_the_driver_s_procfs_places_a_gpu(tmp_path: Path) -> None:
    root = gpu_root(tmp_path)
    write(root, "proc/driver/nvidia/gpus/0000:41:00.0/information", f"GPU UUID: {U1}\nDevice Minor: 3\n")

    mounts = GpuHost(root, nvml=None).mounts([device("0")])

    assert mounts.devices[0] == (root / "dev/nvidia3", "/dev/nvidia3")
    assert mounts.env["CUDA_VISIBLE_DEVICES"] == U1


def test_a_device_node_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    root = gpu_root(tmp_path)
    (root / "dev/nvidia3").unlink()
    with pytest.raises(GpuUnavailable, match=r"node_missing: no such device node here: /dev/nvidia3$"):
        GpuHost(root, nvml=lambda: INVENTORY).mounts([device(M0)])


def test_the_pool_of_a_host_is_discovered_for_auto_and_checked_for_one_gpu_under_two_names(tmp_path: Path) -> None:
    host = GpuHost(tmp_path, nvml=lambda: INVENTORY)

    assert [d.id for d in gpu_pool("auto", host=host).devices] == [U0, M0, M1]
    assert [d.id for d in gpu_pool("0", host=host).devices] == ["0"]
    with pytest.raises(InvalidGpuList, match="duplicate"):
        gpu_pool(f"0,{U0}", host=host)
    empty = gpu_pool("auto", host=GpuHost(tmp_path, nvml=None))
    assert (empty.devices, empty.note) == ((), "WARDEN_JOB_GPUS=auto found no GPU: this host is set up without NVML")
