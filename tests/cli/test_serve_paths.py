"""``warden serve`` makes every relative path in its settings absolute before it leaves its working directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from warden.cli.serve import absolute_paths
from warden.settings import Settings

BASE = Path("/srv/launch")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"data_dir": BASE / "warden-data"}),
        ({"data_dir": Path("state/../data")}, {"data_dir": BASE / "data"}),
        ({"data_dir": Path("/var/lib/warden")}, {"data_dir": Path("/var/lib/warden")}),
        ({"model_store": Path("blobs")}, {"model_store": BASE / "blobs"}),
        ({"model_store": None}, {"model_store": None}),
        (
            {"jwt_jwks_file": Path("keys/jwks.json"), "jwt_public_key_file": Path("issuer.pem")},
            {"jwt_jwks_file": BASE / "keys/jwks.json", "jwt_public_key_file": BASE / "issuer.pem"},
        ),
        ({"database_url": "sqlite:///state/w.db"}, {"database_url": f"sqlite:///{BASE}/state/w.db"}),
        ({"database_url": "sqlite:////abs/w.db"}, {"database_url": "sqlite:////abs/w.db"}),
        ({"database_url": "sqlite://"}, {"database_url": "sqlite://"}),
        ({"database_url": "sqlite:///:memory:"}, {"database_url": "sqlite:///:memory:"}),
        (
            {"database_url": "postgresql+psycopg://warden:pw@db/warden"},
            {"database_url": "postgresql+psycopg://warden:pw@db/warden"},
        ),
    ],
)
def test_relative_paths_become_absolute_against_the_launch_directory(
    given: dict[str, Any], expected: dict[str, Any]
) -> None:
    resolved = absolute_paths(Settings(**given), BASE)
    for name, value in expected.items():
        assert getattr(resolved, name) == value
