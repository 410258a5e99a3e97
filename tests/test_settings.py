"""Settings fail loudly: unknown WARDEN_ variables and bad values stop start-up with their names."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.errors import InvalidArgument
from warden.settings import load_settings


def test_when_nothing_is_set_then_defaults_apply_and_sqlite_lives_in_the_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("warden-data")
    assert settings.resolved_database_url.endswith("/warden-data/warden.db")
    assert settings.resolved_database_url.startswith("sqlite:///")


def test_when_variables_and_overrides_are_given_then_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_PORT", "9000")
    monkeypatch.setenv("WARDEN_THREADS", "2")
    settings = load_settings(port=9100, data_dir=None)
    assert (settings.port, settings.threads) == (9100, 2)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("WARDEN_PORTT", "1", "unknown setting WARDEN_PORTT"),
        ("WARDEN_THREADS", "many", "threads"),
        ("WARDEN_PORT", "70000", "port"),
        ("WARDEN_MAX_IMAGE_BYTES", "0", "max_image_bytes"),
        ("WARDEN_HEADROOM", "-1", "headroom"),
        ("WARDEN_HEADROOM", "auto", "headroom"),
        ("WARDEN_MAX_RUN_MS", "0", "max_run_ms"),
        ("WARDEN_MAX_RUN_MS", "2.5", "max_run_ms"),
        ("WARDEN_MAX_RUN_MS", "soon", "max_run_ms"),
        ("WARDEN_CACHE_SECONDS", "-0.5", "cache_seconds"),
        ("WARDEN_CACHE_SECONDS", "nan", "cache_seconds"),
        ("WARDEN_JOB_IMAGE_ALLOWLIST", "registry.example/team/*", "job_image_allowlist"),
        ("WARDEN_JOB_IMAGE_ALLOWLIST", '["registry.example/t@sha256:12"]', "job_image_allowlist"),
        ("WARDEN_JOB_IMAGE_ALLOWLIST", '["registry.example/t:latest trainer"]', "job_image_allowlist"),
        ("WARDEN_JOB_GPUS", "0,0", "job_gpus: Value error, duplicate: WARDEN_JOB_GPUS entry '0'"),
        ("WARDEN_JOB_GPUS", "-1", "job_gpus: Value error, negative_index"),
        ("WARDEN_JOB_GPUS", "GPU-8f2e", "job_gpus: Value error, malformed_uuid: WARDEN_JOB_GPUS entry 'GPU-8f2e'"),
        ("WARDEN_JOB_GPUS", "0,,1", "job_gpus: Value error, empty_entry"),
        ("WARDEN_JOB_GPUS", "auto,0", "job_gpus: Value error, auto_not_alone"),
        ("WARDEN_MAX_DATASET_BYTES", "0", "max_dataset_bytes"),
        ("WARDEN_DATASET_QUOTA_BYTES", "-1", "dataset_quota_bytes"),
        ("WARDEN_DATASET_QUOTA_BYTES", "lots", "dataset_quota_bytes"),
    ],
)
def test_when_a_variable_is_unknown_or_invalid_then_start_up_stops_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidArgument, match=needle):
        load_settings()


def test_the_secret_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_SECRET_KEY", "s" * 40)
    settings = load_settings()
    assert "s" * 40 not in repr(settings)
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "s" * 40


@pytest.mark.parametrize(("workers", "headroom"), [(1, 1), (2, 2), (4, 9)])
def test_headroom_must_leave_a_shared_worker(monkeypatch: pytest.MonkeyPatch, workers: int, headroom: int) -> None:
    monkeypatch.setenv("WARDEN_WORKERS", str(workers))
    monkeypatch.setenv("WARDEN_HEADROOM", str(headroom))
    with pytest.raises(InvalidArgument, match=r"headroom \(\d+\) must be below workers"):
        load_settings()


@pytest.mark.parametrize(("workers", "value", "headroom"), [(1, None, None), (4, None, None), (2, "0", 0), (4, "3", 3)])
def test_headroom_is_automatic_unless_given(
    monkeypatch: pytest.MonkeyPatch, workers: int, value: str | None, headroom: int | None
) -> None:
    """Unset, headroom is ``None``: the scheduler then keeps one worker free when there are two or more."""
    monkeypatch.setenv("WARDEN_WORKERS", str(workers))
    if value is not None:
        monkeypatch.setenv("WARDEN_HEADROOM", value)
    assert load_settings().headroom == headroom


@pytest.mark.parametrize(("value", "expected"), [(None, 10_000), ("1", 1), ("250", 250), ("60000", 60_000)])
def test_the_longest_run_is_ten_seconds_unless_given(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int
) -> None:
    if value is not None:
        monkeypatch.setenv("WARDEN_MAX_RUN_MS", value)
    assert load_settings().max_run_ms == expected


def test_the_job_image_allow_list_is_a_json_list_of_repositories_or_pinned_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().job_image_allowlist == []
    pinned = "registry.example/team/trainer@sha256:" + "a" * 64
    monkeypatch.setenv("WARDEN_JOB_IMAGE_ALLOWLIST", f'["registry.example/team/*", "{pinned}"]')
    assert load_settings().job_image_allowlist == ["registry.example/team/*", pinned]


def test_dataset_limits_default_to_256_mib_uploads_and_10_gib_stored_staged_in_dev_shm() -> None:
    settings = load_settings()
    assert (settings.max_dataset_bytes, settings.dataset_quota_bytes) == (256 * 1024**2, 10 * 1024**3)
    assert settings.staging_dir == Path("/dev/shm")  # noqa: S108


GPU_UUID = "GPU-8f2e41c3-7a1b-4c5d-9e0f-123456789abc"


@pytest.mark.parametrize("value", ["", "0,1", "auto", f"{GPU_UUID},MIG-{GPU_UUID}/1/0"])
def test_the_job_gpus_are_kept_as_given_and_none_by_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert load_settings().job_gpus == ""
    monkeypatch.setenv("WARDEN_JOB_GPUS", value)
    assert load_settings().job_gpus == value
