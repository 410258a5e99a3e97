"""Administrative commands leave an admin audit record each, with the operating-system user as the actor."""

from __future__ import annotations

import getpass
from pathlib import Path

from tests.cli.conftest import Warden, graph


def test_each_change_made_from_the_command_line_is_recorded(warden_on_each_backend: Warden, tmp_path: Path) -> None:
    warden = warden_on_each_backend
    model = tmp_path / "m.onnx"
    model.write_bytes(graph())
    commands: list[tuple[str, ...]] = [
        ("tenant", "create", "acme", "--rps", "5"),
        ("tenant", "update", "acme", "--weight", "2"),
        ("model", "push", "acme", "pets", str(model)),
        ("tenant", "suspend", "acme"),
        ("tenant", "resume", "acme"),
    ]
    for command in commands:
        assert warden(*command).exit_code == 0, command
    key = warden.json("key", "create", "acme")
    assert warden("key", "revoke", key["key_id"]).exit_code == 0
    assert warden("model", "rm", "acme", "pets").exit_code == 0
    assert warden("tenant", "delete", "acme", "--yes").exit_code == 0

    events = [entry["event"] for entry in warden.json("audit", "query", "--limit", "100")]
    admin = [e for e in events if e["kind"] == "admin"]
    assert [(e["action"], e["target"]) for e in admin] == [
        ("tenant.create", "acme"),
        ("quota.update", "acme"),
        ("model.push", "acme/pets"),
        ("tenant.suspend", "acme"),
        ("tenant.resume", "acme"),
        ("key.create", "acme"),
        ("key.revoke", key["key_id"]),
        ("model.remove", "acme/pets"),
        ("tenant.delete", "acme"),
    ]
    assert {e["authenticator"] for e in admin} == {"cli"}
    assert {e["details"]["os_user"] for e in admin} == {getpass.getuser()}
    assert admin[0]["details"]["rps"] == 5.0
    assert admin[5]["details"]["key_id"] == key["key_id"]
    assert key["key"] not in str(events)  # the key itself is never recorded
    assert warden.json("audit", "verify")["ok"] is True
