"""``WARDEN_JOB_GPUS`` parsed, and the pool: each job its own devices, never one another job holds."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warden.errors import Conflict, InvalidArgument
from warden.jobs.gpus import (
    GpuDevice,
    GpuKind,
    GpuListProblem,
    GpuPool,
    GpusBusy,
    GpusUnsatisfiable,
    InvalidGpuList,
    ReservedGpuEnv,
    check_gpu_env,
    parse_gpu_list,
)

UUID = "8f2e41c3-7a1b-4c5d-9e0f-123456789abc"
OTHER = "0b6a2c1d-3e4f-4a5b-8c7d-fedcba987654"


def pool_of(size: int, **options: object) -> GpuPool:
    return GpuPool([GpuDevice(str(i), GpuKind.INDEX) for i in range(size)], **options)  # type: ignore[arg-type]


# --- parsing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", ()),
        ("   ", ()),
        ("0", ("0",)),
        ("0,1", ("0", "1")),
        (" 3 , 1 ", ("3", "1")),
        ("007", ("7",)),
        (f"GPU-{UUID}", (f"GPU-{UUID}",)),
        (f"GPU-{UUID.upper()}", (f"GPU-{UUID}",)),
        (f"MIG-{UUID}", (f"MIG-{UUID}",)),
        (f"MIG-GPU-{UUID}/1/0", (f"MIG-GPU-{UUID}/1/0",)),
        (f"0,GPU-{UUID},MIG-{OTHER}", ("0", f"GPU-{UUID}", f"MIG-{OTHER}")),
    ],
)
def test_when_the_list_is_well_formed_then_each_entry_is_one_device_in_order(text: str, ids: tuple[str, ...]) -> None:
    assert tuple(d.id for d in parse_gpu_list(text).devices) == ids


def test_each_device_says_how_it_is_named() -> None:
    devices = parse_gpu_list(f"2,GPU-{UUID},MIG-{OTHER}").devices
    assert [d.kind for d in devices] == [GpuKind.INDEX, GpuKind.GPU_UUID, GpuKind.MIG_UUID]
    assert [d.index for d in devices] == [2, None, None]


@pytest.mark.parametrize(
    ("text", "problem", "entry"),
    [
        ("0,0", GpuListProblem.DUPLICATE, "0"),
        ("1,01", GpuListProblem.DUPLICATE, "01"),
        (f"GPU-{UUID},GPU-{UUID.upper()}", GpuListProblem.DUPLICATE, f"GPU-{UUID.upper()}"),
        ("-1", GpuListProblem.NEGATIVE_INDEX, "-1"),
        ("0,-2", GpuListProblem.NEGATIVE_INDEX, "-2"),
        ("255", GpuListProblem.INDEX_OUT_OF_RANGE, "255"),
        ("GPU-8f2e", GpuListProblem.MALFORMED_UUID, "GPU-8f2e"),
        (f"GPU-{UUID}0", GpuListProblem.MALFORMED_UUID, f"GPU-{UUID}0"),
        (f"gpu-{UUID[:-1]}x", GpuListProblem.MALFORMED_UUID, f"gpu-{UUID[:-1]}x"),
        (f"MIG-GPU-{UUID}/1", GpuListProblem.MALFORMED_UUID, f"MIG-GPU-{UUID}/1"),
        ("all", GpuListProblem.MALFORMED_ENTRY, "all"),
        ("gpu0", GpuListProblem.MALFORMED_ENTRY, "gpu0"),
        ("1.5", GpuListProblem.MALFORMED_ENTRY, "1.5"),
        ("0,,1", GpuListProblem.EMPTY_ENTRY, "0,,1"),
        ("0,", GpuListProblem.EMPTY_ENTRY, "0,"),
        ("auto,0", GpuListProblem.AUTO_NOT_ALONE, "auto"),
    ],
)
def test_when_an_entry_is_bad_then_it_is_refused_with_its_problem_and_its_name(
    text: str, problem: GpuListProblem, entry: str
) -> None:
    with pytest.raises(InvalidGpuList) as caught:
        parse_gpu_list(text)

    assert caught.value.code == "invalid_gpu_list"
    assert (caught.value.problem, caught.value.entry) == (problem, entry)
    assert caught.value.message.startswith(f"{problem.value}: WARDEN_JOB_GPUS entry {entry!r}")
    assert isinstance(caught.value, InvalidArgument)


@given(st.lists(st.integers(0, 254), min_size=1, max_size=16, unique=True))
def test_any_list_of_distinct_indexes_is_those_devices(indexes: list[int]) -> None:
    parsed = parse_gpu_list(",".join(map(str, indexes)))
    assert [d.index for d in parsed.devices] == indexes


@given(st.lists(st.integers(0, 254), min_size=1, max_size=8), st.data())
def test_any_list_repeating_a_device_is_refused_as_a_duplicate(indexes: list[int], data: st.DataObject) -> None:
    repeated = data.draw(st.sampled_from(indexes))
    position = data.draw(st.integers(0, len(indexes)))
    entries = [*indexes[:position], repeated, *indexes[position:]]
    with pytest.raises(InvalidGpuList) as caught:
        parse_gpu_list(",".join(map(str, entries)))
    assert caught.value.problem is GpuListProblem.DUPLICATE


def test_auto_is_discovered_only_when_asked() -> None:
    found = parse_gpu_list("auto")  # syntax only: the settings check
    assert found.devices == ()
    called = parse_gpu_list(" AUTO ", lambda: parse_gpu_list("4"))
    assert [d.id for d in called.devices] == ["4"]


def test_an_empty_list_says_that_the_machine_lends_no_gpu() -> None:
    assert "WARDEN_JOB_GPUS is empty" in (parse_gpu_list("").note or "")


@pytest.mark.parametrize("name", ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_MIG_CONFIG_DEVICES"])
def test_a_job_may_not_choose_its_own_devices_through_its_environment(name: str) -> None:
    check_gpu_env({"EPOCHS": "3"})
    with pytest.raises(ReservedGpuEnv, match=name) as caught:
        check_gpu_env({"EPOCHS": "3", name: "all"})
    assert caught.value.code == "gpu_env_reserved"


# --- the pool -----------------------------------------------------------------------------------------------------


def test_a_lease_holds_the_first_free_devices_until_it_is_released() -> None:
    pool = pool_of(3)

    first = pool.acquire(2, "job-a")
    second = pool.acquire(1, "job-b")

    assert (first.device_ids, second.device_ids) == (("0", "1"), ("2",))
    assert pool.holders() == {"0": "job-a", "1": "job-a", "2": "job-b"}
    first.release()
    first.release()  # twice: nothing more happens
    assert [d.id for d in pool.free()] == ["0", "1"]
    with pool.acquire(2, "job-c") as third:
        assert third.device_ids == ("0", "1")
    assert pool.holders() == {"2": "job-b"}


def test_when_a_job_asks_more_than_the_pool_holds_then_it_is_unsatisfiable_not_busy() -> None:
    pool = pool_of(2)
    with pytest.raises(GpusUnsatisfiable, match="asks for 3 GPU") as caught:
        pool.acquire(3, "job-a", timeout=None)  # never waits: no release could satisfy it
    assert caught.value.code == "gpus_unsatisfiable"


def test_when_the_pool_is_empty_then_the_refusal_says_why() -> None:
    pool = GpuPool([], note="WARDEN_JOB_GPUS=auto found no GPU: nvidia-ml-py is not installed")
    with pytest.raises(GpusUnsatisfiable, match="nvidia-ml-py is not installed"):
        pool.acquire(1, "job-a")


def test_when_the_devices_are_held_then_the_job_is_refused_busy_at_once() -> None:
    pool = pool_of(2)
    pool.acquire(2, "job-a")
    with pytest.raises(GpusBusy, match="0 of this machine's 2 are free") as caught:
        pool.acquire(1, "job-b")
    assert caught.value.code == "gpus_busy"
    assert isinstance(caught.value, Conflict)


def test_when_a_job_waits_then_it_gets_the_devices_another_job_releases() -> None:
    pool = pool_of(1)
    held = pool.acquire(1, "job-a")
    got: list[tuple[str, ...]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(1, "job-b", timeout=60).device_ids))
    waiter.start()
    with pytest.raises(GpusBusy):
        pool.acquire(1, "job-c", timeout=0.05)  # a short wait ends in the same refusal
    held.release()
    waiter.join(timeout=60)
    assert got == [("0",)]


def test_zero_gpus_is_an_empty_lease_and_a_negative_count_is_refused() -> None:
    pool = pool_of(0)
    assert pool.acquire(0, "job-a").devices == ()
    with pytest.raises(InvalidArgument, match="0 or more"):
        pool.acquire(-1, "job-a")


def test_a_job_holds_one_lease_at_a_time() -> None:
    pool = pool_of(2)
    pool.acquire(1, "job-a")
    with pytest.raises(Conflict, match="holds GPUs already"):
        pool.acquire(1, "job-a")


def admit_concurrently(pool: GpuPool, counts: list[int]) -> tuple[list[tuple[str, ...]], list[tuple[str, int]]]:
    """Every job asks for its count at the same moment; the devices each got, and each refusal's code and count."""
    barrier = threading.Barrier(len(counts))
    won: list[tuple[str, ...]] = []
    refused: list[tuple[str, int]] = []
    lock = threading.Lock()

    def one(job: int) -> None:
        barrier.wait()
        try:
            lease = pool.acquire(counts[job], f"job-{job}")
        except (GpusBusy, GpusUnsatisfiable) as exc:
            with lock:
                refused.append((exc.code, counts[job]))
            return
        with lock:
            won.append(lease.device_ids)

    threads = [threading.Thread(target=one, args=(job,)) for job in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won, refused


def test_when_eight_jobs_ask_at_once_for_one_of_four_gpus_then_four_win_each_its_own() -> None:
    pool = pool_of(4)

    won, refused = admit_concurrently(pool, [1] * 8)

    assert sorted(won) == [("0",), ("1",), ("2",), ("3",)]
    assert refused == [("gpus_busy", 1)] * 4


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 6), st.lists(st.integers(1, 7), min_size=2, max_size=8))
def test_under_concurrent_admission_no_device_is_ever_held_by_two_jobs(size: int, counts: list[int]) -> None:
    pool = pool_of(size)

    won, refused = admit_concurrently(pool, counts)

    held = [device for lease in won for device in lease]
    assert len(held) == len(set(held))  # exclusive
    assert set(pool.holders()) == set(held)
    assert Counter(map(len, won)) + Counter(count for _, count in refused) == Counter(counts)
    free = size - len(held)  # nobody releases here, so fewer were ever free when a job was turned away
    for code, count in refused:
        assert (code, count > size, count > free) in {("gpus_unsatisfiable", True, True), ("gpus_busy", False, True)}


_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_with_a_lock_directory_a_device_another_process_holds_is_skipped_until_it_lets_go(tmp_path: Path) -> None:
    # Two `warden job run` processes on one machine each have their own pool object: the flock is what they share.
    locks = tmp_path / "gpu-leases"
    pool = pool_of(2, lock_dir=locks)
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(locks / "gpu-0.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == "held\n"
        first = pool.acquire(1, "job-a")
        assert first.device_ids == ("1",)
        with pytest.raises(GpusBusy):
            pool.acquire(1, "job-b")
    finally:
        other.communicate("", timeout=60)  # the other process ends; its flock goes with it
    assert pool.acquire(1, "job-b", timeout=60).device_ids == ("0",)
    assert (locks.stat().st_mode & 0o777) == 0o700
