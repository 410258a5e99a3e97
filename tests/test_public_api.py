"""The public surface: ``warden.detection.__all__`` is complete, and importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import warden.detection


def test_all_lists_every_public_name_and_nothing_missing() -> None:
    public = {
        name
        for name, value in vars(warden.detection).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(warden.detection.__all__) == public
    assert all(hasattr(warden.detection, name) for name in warden.detection.__all__)


def test_importing_the_library_loads_no_server_database_or_cli_code() -> None:
    script = "import sys, json, warden.detection; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    heavy = {"fastapi", "starlette", "sqlalchemy", "typer", "rich", "uvicorn", "torch", "ultralytics"}
    assert heavy.isdisjoint(name.split(".")[0] for name in loaded)
