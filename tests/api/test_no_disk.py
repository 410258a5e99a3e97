"""No request byte reaches the disk: raw and multipart uploads, small and near the size limit.

An audit hook records every file opened for writing while requests run. A
control proves the hook sees spooling: Starlette's own form parser, given the
same multipart upload, writes it to a temporary file.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.api.conftest import World
from warden.samples import SAMPLE_IMAGE

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_recording = threading.Event()
_writes: list[str] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _recording.is_set() or event != "open" or len(args) < 3:
        return
    path, mode, flags = args[0], args[1], args[2]
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & _WRITE_FLAGS
    )
    if writing:
        _writes.append(str(path))


sys.addaudithook(_hook)


@contextmanager
def recorded_writes() -> Iterator[list[str]]:
    """Every path opened for writing, by any thread, inside the block."""
    _writes.clear()
    _recording.set()
    try:
        yield _writes
    finally:
        _recording.clear()


def image_with_marker(size: int) -> tuple[bytes, bytes]:
    """A JPEG padded with a random marker up to ``size`` bytes (the marker follows the end of image)."""
    marker = secrets.token_hex(16).encode()
    data = SAMPLE_IMAGE.read_bytes()
    filler = (marker * (size // len(marker) + 1))[: max(size - len(data), len(marker))]
    return data + filler, marker


def test_control_starlettes_form_parser_spools_a_large_upload_to_a_file() -> None:
    async def form(request: Request) -> PlainTextResponse:
        async with request.form() as parsed:
            upload = parsed["image"]
            return PlainTextResponse(str(len(await upload.read())))  # type: ignore[union-attr]

    data, _ = image_with_marker(3 * 1024 * 1024)
    with TestClient(Starlette(routes=[Route("/", form, methods=["POST"])])) as client, recorded_writes() as writes:
        assert client.post("/", files={"image": ("a.jpg", data, "image/jpeg")}).text == str(len(data))
    assert writes, "the audit hook must see the temporary file Starlette spools to"


@pytest.mark.parametrize("size", [20_000, 2 * 1024 * 1024, 31 * 1024 * 1024])
@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_when_images_are_uploaded_then_nothing_is_written_anywhere(
    world: World, size: int, multipart: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, work = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(work)
    data, marker = image_with_marker(size)
    headers = {"Authorization": f"Bearer {world.alpha_detect}"}
    # The audit writer's first record opens its liveness lock files, once per process and with no
    # request byte in them (warden.audit.presence); a request before recording leaves only request writes.
    warm = world.client.get("/v1/models", headers=headers)
    assert warm.status_code == 200
    assert world.services.audit.flush(timeout=60)
    with recorded_writes() as writes:
        if multipart:
            answer = world.client.post(
                "/v1/models/tiny/detect", files={"image": ("a.jpg", data, "image/jpeg")}, headers=headers
            )
        else:
            answer = world.client.post(
                "/v1/models/tiny/detect", content=data, headers={**headers, "Content-Type": "image/jpeg"}
            )
    assert answer.status_code == 200, answer.text
    assert writes == []
    for root in (world.services.settings.data_dir, temp, work):
        for path in root.rglob("*"):
            assert not path.is_file() or marker not in path.read_bytes(), path


def test_after_hundreds_of_requests_no_marker_is_anywhere_on_disk(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, work = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(work)
    headers = {"Authorization": f"Bearer {world.alpha_detect}"}
    markers = []
    for number in range(240):
        data, marker = image_with_marker(4_000 + 97 * number)
        markers.append(marker)
        if number % 2:
            answer = world.client.post(
                "/v1/models/tiny/detect", files={"image": ("a.jpg", data, "image/jpeg")}, headers=headers
            )
        else:
            answer = world.client.post(
                "/v1/models/tiny/detect", content=data, headers={**headers, "Content-Type": "image/jpeg"}
            )
        assert answer.status_code == 200, answer.text
    assert world.services.audit.flush(timeout=30)  # the records of these requests are on disk too
    for root in (world.services.settings.data_dir, temp, work):
        for path in root.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert not any(marker in content for marker in markers), path
