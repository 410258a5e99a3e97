"""Dockerfiles (and Containerfiles): base images pinned by digest, a non-root ``USER`` at the end, no ``ADD`` from URLs.

The parser follows line continuations (``\\`` or the ``# escape=`` directive), skips comments
and heredoc bodies, and substitutes ``ARG`` defaults declared before the first ``FROM`` into
base image names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from warden.policy.findings import Finding, Profile
from warden.policy.rules import Checks, Hit, Subject, image_problem, is_root_user

_ESCAPE = re.compile(r"^#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}?")
_URL: Final = ("http://", "https://", "git@")


@dataclass(frozen=True)
class Instruction:
    """One instruction: the line it starts on, its keyword in upper case, its ``--flags`` and its arguments."""

    line: int
    keyword: str
    flags: tuple[str, ...]
    arguments: str

    @property
    def text(self) -> str:
        return " ".join((self.keyword, *self.flags, self.arguments)).strip()


def instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions."""
    escape = "\\"
    lines = text.splitlines()
    for raw in lines:  # parser directives come first, before any instruction or blank line
        match = _ESCAPE.match(raw.strip())
        if match:
            escape = match.group(1)
            break
        if not raw.startswith("#"):
            break
    result: list[Instruction] = []
    index = 0
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and index < len(lines):
            parts[-1] = parts[-1][: -len(escape)]
            while index < len(lines) and (not lines[index].strip() or lines[index].strip().startswith("#")):
                index += 1
            if index < len(lines):
                parts.append(lines[index].strip())
                index += 1
        logical = " ".join(part for part in parts if part)
        keyword, _, rest = logical.partition(" ")
        heredoc = _HEREDOC.search(rest) if keyword.upper() in {"RUN", "COPY", "ADD"} else None
        if heredoc:
            while index < len(lines) and lines[index].strip() != heredoc.group(1):
                index += 1
            index += 1
        words = rest.split()
        count = next((at for at, word in enumerate(words) if not word.startswith("--")), len(words))
        result.append(Instruction(start + 1, keyword.upper(), tuple(words[:count]), " ".join(words[count:])))
    return result


@dataclass(frozen=True)
class Stage:
    """One build stage: its ``FROM``, its base (ARGs substituted), its alias and its ``USER`` instructions."""

    start: Instruction
    base: str
    alias: str | None
    users: tuple[Instruction, ...]
    parent: Stage | None
    """The earlier stage this one builds on (``FROM builder``), whose ``USER`` it inherits."""

    def user(self) -> Instruction | None:
        """The last ``USER`` in effect at the end of the stage, inherited from a parent stage if none."""
        if self.users:
            return self.users[-1]
        return self.parent.user() if self.parent else None


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: its instructions and its stages."""

    name: str
    instructions: tuple[Instruction, ...]
    stages: tuple[Stage, ...]


def parse(text: str, name: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text (which never fails: unknown instructions are kept as they are)."""
    parsed = instructions(text)
    defaults: dict[str, str] = {}
    stages: list[Stage] = []
    by_alias: dict[str, Stage] = {}
    current: tuple[Instruction, str, str | None, list[Instruction]] | None = None

    def close() -> None:
        if current is not None:
            start, base, alias, users = current
            stage = Stage(start, base, alias, tuple(users), by_alias.get(base.lower()))
            stages.append(stage)
            if alias:
                by_alias[alias.lower()] = stage

    for instruction in parsed:
        if instruction.keyword == "ARG" and current is None:
            key, _, value = instruction.arguments.partition("=")
            defaults[key.strip()] = value.strip().strip("\"'")
        elif instruction.keyword == "FROM":
            close()
            words = instruction.arguments.split()
            base = _VARIABLE.sub(
                lambda match: defaults.get(match.group(1)) or match.group(2) or "", words[0] if words else ""
            )
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            current = (instruction, base, alias, [])
        elif instruction.keyword == "USER" and current is not None:
            current[3].append(instruction)
    close()
    return Dockerfile(name, tuple(parsed), tuple(stages))


DOCKERFILE_CHECKS: Final = Checks[Dockerfile]()


@DOCKERFILE_CHECKS.rule("image-digest")
def _image_digest(dockerfile: Dockerfile) -> Iterator[Hit]:
    earlier: set[str] = set()
    for stage in dockerfile.stages:
        base = stage.base.lower()
        if base != "scratch" and base not in earlier:
            problem = image_problem(stage.base) if stage.base else "the base image is not given"
            if problem:
                yield Hit(
                    stage.start.text, problem, "pin the base image by digest: FROM name@sha256:…", stage.start.line
                )
        if stage.alias:
            earlier.add(stage.alias.lower())


@DOCKERFILE_CHECKS.rule("run-as-non-root")
def _run_as_non_root(dockerfile: Dockerfile) -> Iterator[Hit]:
    if dockerfile.stages and dockerfile.stages[-1].user() is None:
        final = dockerfile.stages[-1].start
        yield Hit(
            final.text,
            "the final stage sets no USER, so the image runs as root",
            "add USER 10001:10001 (a non-root user) at the end of the final stage",
            final.line,
        )


@DOCKERFILE_CHECKS.rule("run-as-user-root")
def _run_as_user_root(dockerfile: Dockerfile) -> Iterator[Hit]:
    user = dockerfile.stages[-1].user() if dockerfile.stages else None
    if user is not None and is_root_user(user.arguments):
        yield Hit(user.text, f"the image ends as root (USER {user.arguments})", "end with a non-root USER", user.line)


@DOCKERFILE_CHECKS.rule("add-from-url")
def _add_from_url(dockerfile: Dockerfile) -> Iterator[Hit]:
    for instruction in dockerfile.instructions:
        if instruction.keyword != "ADD" or any(flag.startswith("--checksum") for flag in instruction.flags):
            continue
        if any(word.startswith(_URL) for word in _words(instruction.arguments)[:-1]):
            yield Hit(instruction.text, "ADD downloads a file from a URL without checking it", line=instruction.line)


def _words(arguments: str) -> list[str]:
    """An instruction's arguments in shell form (``src dst``) or JSON form (``["src", "dst"]``)."""
    if arguments.startswith("["):
        try:
            words = json.loads(arguments)
        except ValueError:
            return arguments.split()
        if isinstance(words, list):
            return [str(word) for word in words]
    return arguments.split()


def is_dockerfile(text: str) -> bool:
    """Whether ``text`` reads as a Dockerfile: its first instruction is ``FROM`` (or ``ARG`` before one)."""
    keywords = [instruction.keyword for instruction in instructions(text)[:20]]
    return bool(keywords) and keywords[0] in {"FROM", "ARG"} and "FROM" in keywords


def check_dockerfile(text: str, source: str, profile: Profile) -> list[Finding]:
    """The findings of one Dockerfile; each names the instruction's line as ``Dockerfile:12``."""
    dockerfile = parse(text, source)
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    return [
        replace(finding, resource=f"{name}:{finding.line}" if finding.line is not None else name)
        for finding in DOCKERFILE_CHECKS.run(dockerfile, Subject(source, name), profile)
    ]
