"""``warden model share`` / ``unshare``: the operator's mark that lets one session of some bytes serve every tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Warden, graph, one_error_line
from warden.audit import AuditFilter


@pytest.fixture
def pushed(warden_on_each_backend: Warden, tmp_path: Path) -> tuple[Warden, str]:
    """Tenants ``acme`` and ``zeta`` holding the same bytes as model ``pets``; their sha256."""
    warden = warden_on_each_backend
    model = tmp_path / "pets.onnx"
    model.write_bytes(graph(0.9))
    for tenant in ("acme", "zeta"):
        warden.json("tenant", "create", tenant)
        digest: str = warden.json("model", "push", tenant, "pets", model)["sha256"]
    return warden, digest


def test_share_then_unshare_marks_and_unmarks_the_bytes_for_every_tenant(pushed: tuple[Warden, str]) -> None:
    warden, digest = pushed
    shared = warden.json("model", "share", digest)
    assert (shared["sha256"], shared["shared"]) == (digest, True)
    assert shared["marked_by"].startswith("cli:")
    with warden.services() as services:
        for tenant in ("acme", "zeta"):
            assert services.registry.resolve(services.tenants.tenant_id(tenant), "pets").shared
    assert warden.json("model", "unshare", digest) == {"sha256": digest, "shared": False, "removed": True}
    assert warden.json("model", "unshare", digest)["removed"] is False
    with warden.services() as services:
        assert not services.registry.resolve(services.tenants.tenant_id("zeta"), "pets").shared
        actions = [(e.event.action, e.event.target) for e in services.audit.scan(AuditFilter(kind="admin"))]
    assert actions.count(("blob.share", digest)) == 1
    assert actions.count(("blob.unshare", digest)) == 2


@pytest.mark.parametrize(
    ("digest", "code"), [("f" * 64, "not_found"), ("F" * 64, "invalid_argument"), ("abc", "invalid_argument")]
)
def test_share_of_unknown_or_malformed_digests_fails_with_one_line(
    pushed: tuple[Warden, str], digest: str, code: str
) -> None:
    warden, _ = pushed
    for command in ("share", "unshare"):
        result = warden("model", command, digest)
        assert result.exit_code != 0
        assert one_error_line(result).startswith(f"warden: error: {code}: ")
