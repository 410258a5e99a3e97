"""The host's NVIDIA driver as the job backends need it: which devices exist, their nodes, libraries and CDI specs.

Everything here reads below an injectable ``root`` (``/`` on a real host, a directory of stand-ins in tests) and
asks NVML only through an injectable inventory function, so that every answer can be checked without a GPU.

- :func:`nvml_inventory`: every GPU NVML lists (index, UUID, device minor, MIG devices with their GPU and compute
  instance ids), through ``pynvml`` from the optional ``nvidia-ml-py`` package, imported only when called.
- :func:`procfs_inventory`: the same without NVML, from the driver's ``/proc/driver/nvidia/gpus/*/information``
  (index is the position in PCI bus order, as NVML numbers them); it sees no MIG device.
- :func:`resolve`: a leased device's UUID, its ``/dev/nvidiaN`` minor and, for a MIG device, the minors of its GPU
  and compute instance capability nodes (``/proc/driver/nvidia-caps/mig-minors``, as nvidia-container-toolkit
  reads them). A device no inventory names is refused (``gpu_unavailable``, ``unresolved``), never guessed.
- :func:`control_nodes` and :func:`driver_libraries`: what CUDA needs beside the device node: ``/dev/nvidiactl``,
  ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools``, ``/dev/nvidia-modeset`` where present, and the driver's
  user-space libraries (``libcuda.so*``, ``libnvidia-*.so*``) in the standard library directories and in those
  the linker cache (``/etc/ld.so.cache``) names, the places nvidia-container-toolkit looks.
- :func:`cdi_gpu_names`: the device names of an ``nvidia.com/gpu`` CDI spec in ``/etc/cdi`` or ``/var/run/cdi``
  (``nvidia-ctk cdi generate``), or None when there is none.
- :class:`GpuHost`: the above put together as the mounts one bwrap job gets (:class:`~warden.jobs.bwrap_args
  .GpuMounts`), and :func:`gpu_pool` / :func:`discover_gpus`: the pool ``WARDEN_JOB_GPUS`` describes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from warden.errors import WardenError
from warden.jobs.bwrap_args import GpuMounts
from warden.jobs.gpus import (
    Discovery,
    GpuDevice,
    GpuKind,
    GpuListProblem,
    GpuPool,
    GpuUnavailable,
    GpuUnavailableReason,
    InvalidGpuList,
    parse_gpu_list,
)

__all__ = [
    "CDI_DIRS",
    "CDI_KIND",
    "CONTROL_NODES",
    "GpuHost",
    "GpuInfo",
    "MigInfo",
    "NvmlUnavailable",
    "ResolvedGpu",
    "cdi_gpu_names",
    "check_distinct",
    "control_nodes",
    "discover_gpus",
    "driver_libraries",
    "gpu_pool",
    "mig_minors",
    "nvml_inventory",
    "procfs_inventory",
    "resolve",
]

CONTROL_NODES: Final = ("dev/nvidiactl", "dev/nvidia-uvm", "dev/nvidia-uvm-tools", "dev/nvidia-modeset")
CDI_DIRS: Final = (Path("/etc/cdi"), Path("/var/run/cdi"))
CDI_KIND: Final = "nvidia.com/gpu"
LIBRARY_DIRS: Final = (
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "usr/lib64",
    "usr/lib",
    "lib/x86_64-linux-gnu",
    "lib/aarch64-linux-gnu",
    "lib64",
    "lib",
    "usr/local/nvidia/lib64",
    "usr/local/nvidia/lib",
)
"""Where distributions and the NVIDIA installers put the driver's libraries, relative to the root."""
_LIBRARY: Final = re.compile(r"lib(?:cuda|nvidia-[A-Za-z0-9_.+-]+)\.so(?:\.[0-9.]+)?")
_UUID_VALUE: Final = re.compile(r"(?:GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LEGACY_MIG: Final = re.compile(r"MIG-(GPU-[0-9a-f-]{36})/(\d+)/(\d+)")
_NVML_MIG_ENABLED: Final = 1


class NvmlUnavailable(WardenError):
    """NVML cannot answer here: ``nvidia-ml-py`` is not installed, or no NVIDIA driver is loaded."""

    code = "nvml_unavailable"


@dataclass(frozen=True)
class MigInfo:
    """One MIG device of a GPU: its UUID and the GPU and compute instance it is."""

    uuid: str
    gpu_instance: int
    compute_instance: int


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the driver lists it: NVML's index, its UUID, its device minor (``/dev/nvidiaN``), its MIG devices.

    ``uuid`` is None where the driver did not say (procfs before the GPU was first initialised).
    """

    index: int
    uuid: str | None
    minor: int
    mig: tuple[MigInfo, ...] = ()
    mig_mode: bool = False


@dataclass(frozen=True)
class ResolvedGpu:
    """A leased device with what the sandbox needs of it: the UUID CUDA is told, the device node's minor (the
    parent GPU's for a MIG device) and the minors of its MIG capability nodes (``/dev/nvidia-caps/nvidia-capN``)."""

    device: GpuDevice
    uuid: str
    minor: int
    caps: tuple[int, ...] = ()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _canonical(uuid: object) -> str:
    return _text(uuid).strip().lower().replace("gpu-", "GPU-").replace("mig-", "MIG-")


def _mig_devices(nvml: Any, handle: Any) -> tuple[tuple[MigInfo, ...], bool]:
    """A GPU's MIG devices, and whether MIG mode is on; a GPU that cannot do MIG has none."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:  # NVML_ERROR_NOT_SUPPORTED: no MIG on this GPU
        return (), False
    if current != _NVML_MIG_ENABLED:
        return (), False
    found = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError:  # NVML_ERROR_NOT_FOUND: an empty slot
            continue
        found.append(
            MigInfo(
                _canonical(nvml.nvmlDeviceGetUUID(mig)),
                int(nvml.nvmlDeviceGetGpuInstanceId(mig)),
                int(nvml.nvmlDeviceGetComputeInstanceId(mig)),
            )
        )
    return tuple(found), True


def nvml_inventory(nvml: Any | None = None) -> tuple[GpuInfo, ...]:
    """Every GPU NVML lists; raises :class:`NvmlUnavailable` saying why NVML cannot answer.

    ``nvml`` stands in for the ``pynvml`` module (tests pass a fake); by default it is imported here, so Warden
    needs ``nvidia-ml-py`` only on machines that discover GPUs.
    """
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            raise NvmlUnavailable("nvidia-ml-py is not installed (pip install nvidia-ml-py)") from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML did not start ({exc}): is an NVIDIA driver loaded?") from None
    try:
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            mig, mode = _mig_devices(nvml, handle)
            uuid = _canonical(nvml.nvmlDeviceGetUUID(handle))
            gpus.append(GpuInfo(index, uuid, int(nvml.nvmlDeviceGetMinorNumber(handle)), mig, mode))
        return tuple(gpus)
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML failed listing the GPUs: {exc}") from None
    finally:
        nvml.nvmlShutdown()


def procfs_inventory(root: Path = Path("/")) -> tuple[GpuInfo, ...]:
    """The GPUs the driver lists in ``/proc/driver/nvidia/gpus`` (one directory per PCI address), in PCI order."""
    base = root / "proc/driver/nvidia/gpus"
    try:
        addresses = sorted(entry.name for entry in base.iterdir())
    except OSError:
        return ()
    gpus = []
    for index, address in enumerate(addresses):
        try:
            text = (base / address / "information").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
        minor = fields.get("Device Minor", "")
        if not minor.isdigit():
            continue
        uuid = _canonical(fields.get("GPU UUID", ""))
        gpus.append(GpuInfo(index, uuid if _UUID_VALUE.fullmatch(uuid) else None, int(minor)))
    return tuple(gpus)


def mig_minors(text: str) -> dict[str, int]:
    """``/proc/driver/nvidia-caps/mig-minors`` as a mapping: ``gpu0/gi1/access`` → 3, ``gpu0/gi1/ci0/access`` → 4."""
    found = {}
    for line in text.splitlines():
        name, _, minor = line.strip().partition(" ")
        if minor.strip().isdigit():
            found[name] = int(minor)
    return found


def _unresolved(device: GpuDevice, why: str) -> GpuUnavailable:
    return GpuUnavailable(GpuUnavailableReason.UNRESOLVED, f"GPU {device.id}: {why}")


def _resolve_mig(device: GpuDevice, inventory: Sequence[GpuInfo], minors: Mapping[str, int]) -> ResolvedGpu:
    legacy = _LEGACY_MIG.fullmatch(device.id)
    parent: GpuInfo | None
    if legacy is not None:  # MIG-GPU-<uuid>/<gi>/<ci>: the parent and the instances are in the name
        parent = next((gpu for gpu in inventory if gpu.uuid == legacy.group(1)), None)
        instance, compute = int(legacy.group(2)), int(legacy.group(3))
    else:
        parent = next((gpu for gpu in inventory if any(m.uuid == device.id for m in gpu.mig)), None)
        mig = next((m for m in parent.mig if m.uuid == device.id), None) if parent else None
        instance, compute = (mig.gpu_instance, mig.compute_instance) if mig else (0, 0)
    if parent is None:
        raise _unresolved(device, "no GPU lists this MIG device (NVML, from nvidia-ml-py, lists MIG devices)")
    names = (f"gpu{parent.minor}/gi{instance}/access", f"gpu{parent.minor}/gi{instance}/ci{compute}/access")
    missing = [name for name in names if name not in minors]
    if missing:
        raise _unresolved(device, f"/proc/driver/nvidia-caps/mig-minors has no {', '.join(missing)}")
    return ResolvedGpu(device, device.id, parent.minor, tuple(minors[name] for name in names))


def resolve(
    devices: Iterable[GpuDevice], inventory: Sequence[GpuInfo], minors: Mapping[str, int] | None = None
) -> tuple[ResolvedGpu, ...]:
    """Each device's UUID, device minor and MIG capability minors, from the driver's inventory; a device the
    inventory does not name (or names without a UUID) is refused with ``unresolved``."""
    resolved = []
    for device in devices:
        if device.kind is GpuKind.MIG_UUID:
            resolved.append(_resolve_mig(device, inventory, minors or {}))
            continue
        if device.kind is GpuKind.INDEX:
            gpu = next((g for g in inventory if g.index == device.index), None)
        else:
            gpu = next((g for g in inventory if g.uuid == device.id), None)
        if gpu is None:
            raise _unresolved(device, "the driver lists no such GPU (install nvidia-ml-py, or check the driver)")
        if gpu.uuid is None:
            raise _unresolved(device, "the driver does not say its UUID yet (install nvidia-ml-py)")
        if gpu.mig_mode:
            raise GpuUnavailable(
                GpuUnavailableReason.MIG_MODE, f"GPU {device.id} is in MIG mode: list its MIG devices instead"
            )
        resolved.append(ResolvedGpu(device, gpu.uuid, gpu.minor))
    return tuple(resolved)


def check_distinct(devices: Sequence[GpuDevice], inventory: Sequence[GpuInfo]) -> None:
    """Refuse a list naming one GPU twice under two names (``0`` and its UUID), or a GPU beside one of its MIG
    devices; a name the inventory does not know is left to the backend that resolves it."""
    whole: dict[str, GpuDevice] = {}  # GPU UUID -> the entry naming the whole GPU
    parts: dict[str, GpuDevice] = {}  # GPU UUID -> an entry naming one of its MIG devices
    for device in devices:
        if device.kind is GpuKind.MIG_UUID:
            legacy = _LEGACY_MIG.fullmatch(device.id)
            parent = (
                legacy.group(1)
                if legacy
                else next((g.uuid for g in inventory if any(m.uuid == device.id for m in g.mig)), None)
            )
            clash = whole.get(parent) if parent else None
            if parent:
                parts.setdefault(parent, device)
        else:
            uuid = (
                device.id
                if device.kind is GpuKind.GPU_UUID
                else next((g.uuid for g in inventory if g.index == device.index), None)
            )
            clash = (whole.get(uuid) or parts.get(uuid)) if uuid else None
            if uuid:
                whole.setdefault(uuid, device)
        if clash is not None and clash != device:
            raise InvalidGpuList(
                GpuListProblem.DUPLICATE, device.id, f"it names the same GPU as {clash.id}, or a part of it"
            )


def control_nodes(root: Path = Path("/")) -> tuple[str, ...]:
    """The driver's control nodes present under ``root`` (``/dev/nvidiactl`` …), as paths inside the sandbox."""
    return tuple("/" + node for node in CONTROL_NODES if (root / node).exists())


def _cached_dirs(root: Path) -> set[str]:
    """Directories the linker cache names for a driver library (the cache holds each library's full path)."""
    try:
        cache = (root / "etc/ld.so.cache").read_bytes()
    except OSError:
        return set()
    dirs = set()
    for raw in cache.split(b"\0"):
        text = raw.decode("utf-8", errors="ignore")
        directory, _, name = text.rpartition("/")
        if text.startswith("/") and _LIBRARY.fullmatch(name):
            dirs.add(directory.lstrip("/"))
    return dirs


def driver_libraries(root: Path = Path("/")) -> tuple[str, ...]:
    """The driver's user-space libraries under ``root``, as paths inside the sandbox (``/usr/lib/…/libcuda.so.1``).

    Two names of one file (``/lib`` linked to ``/usr/lib``) are listed once, by the first directory searched.
    """
    found: dict[Path, str] = {}
    for directory in (*LIBRARY_DIRS, *sorted(_cached_dirs(root) - set(LIBRARY_DIRS))):
        try:
            names = sorted(entry.name for entry in (root / directory).iterdir())
        except OSError:
            continue
        for name in names:
            path = root / directory / name
            if _LIBRARY.fullmatch(name) and path.is_file():
                found.setdefault(path.resolve(), f"/{directory}/{name}")
    return tuple(dict.fromkeys(found.values()))


def cdi_gpu_names(dirs: Sequence[Path] = CDI_DIRS) -> frozenset[str] | None:
    """The device names of the ``nvidia.com/gpu`` CDI specs in ``dirs`` (``0``, ``GPU-…``, ``all``); None when no
    such spec exists. A file that does not parse, or is of another kind, is skipped."""
    names: set[str] | None = None
    for directory in dirs:
        try:
            files = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
        except OSError:
            continue
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
                spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError):
                continue
            if not isinstance(spec, dict) or spec.get("kind") != CDI_KIND:
                continue
            names = names or set()
            for entry in spec.get("devices") or []:
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    names.add(entry["name"])
    return frozenset(names) if names is not None else None


Inventory = Callable[[], tuple[GpuInfo, ...]]


class GpuHost:
    """The host's driver: ``root`` to read below, ``nvml`` the inventory to ask first (None: the driver's procfs
    only). :meth:`mounts` is what a bwrap job with ``devices`` binds and is told."""

    def __init__(self, root: Path = Path("/"), nvml: Inventory | None = nvml_inventory) -> None:
        self.root = root
        self.nvml = nvml

    def inventory(self) -> tuple[GpuInfo, ...]:
        """NVML's list of GPUs where NVML answers, else the driver's procfs list (no MIG devices there)."""
        if self.nvml is not None:
            with contextlib.suppress(NvmlUnavailable):  # no NVML or no driver answer: the procfs list below
                return self.nvml()
        return procfs_inventory(self.root)

    def resolve(self, devices: Sequence[GpuDevice]) -> tuple[ResolvedGpu, ...]:
        """The devices resolved against this host's inventory and MIG capability minors."""
        try:
            minors = mig_minors((self.root / "proc/driver/nvidia-caps/mig-minors").read_text(encoding="utf-8"))
        except OSError:
            minors = {}
        return resolve(devices, self.inventory(), minors)

    def mounts(self, devices: Sequence[GpuDevice], covered: Sequence[Path] = ()) -> GpuMounts:
        """The device nodes, control nodes and libraries one job binds, and the variables naming its devices.

        Libraries below ``covered`` (the runtime paths the sandbox binds whole, ``/usr`` by default) are there
        already and not bound again. A device node that does not exist is refused with ``node_missing``.
        """
        resolved = self.resolve(devices)
        nodes = [f"/dev/nvidia{gpu.minor}" for gpu in resolved]
        nodes += [f"/dev/nvidia-caps/nvidia-cap{cap}" for gpu in resolved for cap in gpu.caps]
        missing = [node for node in nodes if not (self.root / node.lstrip("/")).exists()]
        if missing:
            raise GpuUnavailable(GpuUnavailableReason.NODE_MISSING, f"no such device node here: {', '.join(missing)}")
        nodes += control_nodes(self.root)
        libraries = [
            lib for lib in driver_libraries(self.root) if not any(Path(lib).is_relative_to(path) for path in covered)
        ]
        uuids = ",".join(gpu.uuid for gpu in resolved)
        return GpuMounts(
            devices=tuple((self.root / node.lstrip("/"), node) for node in dict.fromkeys(nodes)),
            libraries=tuple((self.root / lib.lstrip("/"), lib) for lib in libraries),
            env={"CUDA_VISIBLE_DEVICES": uuids, "NVIDIA_VISIBLE_DEVICES": uuids},
        )


def discover_gpus(nvml: Inventory = nvml_inventory) -> Discovery:
    """Every GPU NVML lists, by UUID, a GPU in MIG mode as its MIG devices; none, with the reason, without NVML."""
    try:
        inventory = nvml()
    except NvmlUnavailable as exc:
        return Discovery((), f"WARDEN_JOB_GPUS=auto found no GPU: {exc}")
    devices: list[GpuDevice] = []
    for gpu in inventory:
        if gpu.mig_mode:
            devices += [GpuDevice(mig.uuid, GpuKind.MIG_UUID) for mig in gpu.mig]
        elif gpu.uuid is not None:
            devices.append(GpuDevice(gpu.uuid, GpuKind.GPU_UUID))
    return Discovery(tuple(devices), None if devices else "WARDEN_JOB_GPUS=auto found no GPU: NVML lists none")


def gpu_pool(text: str, *, lock_dir: Path | None = None, host: GpuHost | None = None) -> GpuPool:
    """The pool ``WARDEN_JOB_GPUS`` describes: ``auto`` discovered through NVML now, and a list checked against the
    host's inventory where there is one (no GPU under two names)."""
    machine = host or GpuHost()
    found = parse_gpu_list(text, lambda: discover_gpus(machine.nvml or _no_nvml))
    if found.devices:
        check_distinct(found.devices, machine.inventory())
    return GpuPool(found.devices, lock_dir=lock_dir, note=found.note)


def _no_nvml() -> tuple[GpuInfo, ...]:
    raise NvmlUnavailable("this host is set up without NVML")
