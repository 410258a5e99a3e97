"""``warden serve`` as a real process writes JSON lines only, with Warden's access line instead of uvicorn's."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx

from tests.cli.test_serve import free_port, running, wait_for


def test_warden_serve_writes_one_json_object_per_line_and_its_own_access_line(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WARDEN_DATA_DIR": str(tmp_path / "data"), "WARDEN_PORT": str(port)}
    env |= {"WARDEN_LOG_FORMAT": "json", "WARDEN_LOG_LEVEL": "INFO"}
    secret = secrets.token_urlsafe(32)[:43]  # may itself hold '_': compare the whole secret, never a split part
    token = "wdn_0123456789ab_" + secret
    seen: list[str] = []
    with running(["serve"], env) as lines:
        started = wait_for(lines, "Uvicorn running", seen=seen)
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        request_id = answer.headers["X-Request-ID"]
        access = json.loads(wait_for(lines, request_id, seen=seen))
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live")  # a probe: debug level, so not written at info
    while not lines.empty():  # what was printed until the server stopped
        seen.append(lines.get())
    assert json.loads(started)["logger"] == "uvicorn.error"
    assert {k: access[k] for k in ("logger", "level", "route", "status", "code")} == {
        "logger": "warden.access",
        "level": "info",
        "route": "/v1/models",
        "status": 401,
        "code": "unauthenticated",
    }
    assert any("Shutting down" in line for line in seen)
    for line in seen:
        assert isinstance(json.loads(line), dict), line
        assert secret not in line
        assert "/v2/health/live" not in line
        assert '"GET /v1/models HTTP/1.1"' not in line  # uvicorn's access log is off
