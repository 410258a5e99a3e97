"""Shared by the job tests: the services over a fresh data directory, an empty output directory, a race of threads,
and a machine with two GPUs made of stand-ins (no GPU is needed)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import clean_environment
from warden.errors import ApprovalRefused
from warden.jobs.gpu_driver import GpuHost, GpuInfo
from warden.services import Services, open_services
from warden.settings import load_settings


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """The state services (approvals, audit) over a fresh SQLite data directory, closed after the test."""
    clean_environment(monkeypatch)
    opened = open_services(load_settings(data_dir=tmp_path / "wd"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """An empty directory for a job's output."""
    path = tmp_path / "output"
    path.mkdir()
    return path


FAKE_GPUS = (
    GpuInfo(0, "GPU-00000000-0000-4000-8000-000000000000", 0),
    GpuInfo(1, "GPU-11111111-1111-4111-8111-111111111111", 1),
)
"""The two GPUs of :func:`fake_gpu_host`, as NVML would list them."""


@pytest.fixture
def fake_gpu_host(tmp_path: Path) -> GpuHost:
    """A host whose driver shows two GPUs: regular files stand in for ``/dev/nvidia0``, ``/dev/nvidia1`` and
    ``/dev/nvidiactl`` (bwrap binds a file as it binds a device node), and NVML is a function listing them."""
    root = tmp_path / "gpu-host"
    (root / "dev").mkdir(parents=True)
    for node in ("nvidia0", "nvidia1", "nvidiactl"):
        (root / "dev" / node).write_text(node)
    return GpuHost(root, nvml=lambda: FAKE_GPUS)


def race(callers: int, call: Callable[[], object], won: str) -> list[str]:
    """Start ``callers`` threads at once on ``call``; each outcome is ``won`` or the refusal's reason, sorted."""
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            call()
            outcome = won
        except ApprovalRefused as exc:
            outcome = exc.reason.value
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)
