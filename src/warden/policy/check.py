"""One entry point per input: a file (its kind found from its name and content) or a ``docker run`` command line."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Final

import yaml

from warden.errors import InvalidArgument, UnsupportedFile
from warden.policy.compose import ENGINE_CHECKS, check_compose, is_compose
from warden.policy.dockerfile import DOCKERFILE_CHECKS, check_dockerfile, is_dockerfile
from warden.policy.dockerrun import check_docker_run
from warden.policy.findings import Finding, Profile
from warden.policy.kubernetes import POD_CHECKS, check_manifests, is_manifest

MAX_BYTES: Final = 16 * 1024 * 1024
_YAML_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})


class InputKind(StrEnum):
    """The kinds of input a policy check reads."""

    KUBERNETES = "kubernetes"
    COMPOSE = "compose"
    DOCKERFILE = "dockerfile"
    DOCKER_RUN = "docker-run"


RULES_BY_KIND: Final[dict[InputKind, frozenset[str]]] = {
    InputKind.KUBERNETES: POD_CHECKS.rule_ids,
    InputKind.COMPOSE: ENGINE_CHECKS.rule_ids,
    InputKind.DOCKERFILE: DOCKERFILE_CHECKS.rule_ids,
    InputKind.DOCKER_RUN: ENGINE_CHECKS.rule_ids,
}
"""Which rules apply to which input kind."""


def yaml_documents(text: str, source: str) -> list[tuple[int, object]]:
    """Every document of a (multi-document) YAML text, with the line it starts on; empty documents are skipped."""
    loader = yaml.SafeLoader(text)
    documents: list[tuple[int, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            document = loader.construct_document(node) if node is not None else None
            if node is not None and document is not None:
                documents.append((node.start_mark.line + 1, document))
    except yaml.YAMLError as exc:
        raise UnsupportedFile(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from exc
    finally:
        loader.dispose()
    return documents


def _looks_like_dockerfile_name(name: str) -> bool:
    lower = name.lower()
    return (
        lower in {"dockerfile", "containerfile"}
        or lower.startswith(("dockerfile.", "containerfile."))
        or (lower.endswith((".dockerfile", ".containerfile")))
    )


def check_text(text: str, source: str, profile: Profile = Profile.RESTRICTED) -> tuple[InputKind, list[Finding]]:
    """The kind of a file's ``text`` and its findings; a text of no known kind raises :class:`UnsupportedFile`."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    if _looks_like_dockerfile_name(name) or (Path(name).suffix.lower() not in _YAML_SUFFIXES and is_dockerfile(text)):
        return InputKind.DOCKERFILE, check_dockerfile(text, source, profile)
    documents = yaml_documents(text, source)
    if any(is_compose(document) for _, document in documents):
        return InputKind.COMPOSE, check_compose(documents, source, profile)
    if documents and all(is_manifest(document) for _, document in documents):
        return InputKind.KUBERNETES, check_manifests(documents, source, profile)
    raise UnsupportedFile(f"{source}: not a Kubernetes manifest, compose file or Dockerfile")


def check_file(path: Path, profile: Profile = Profile.RESTRICTED) -> tuple[InputKind, list[Finding]]:
    """Read and check one file; an unreadable one raises :class:`InvalidArgument`."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InvalidArgument(f"{path}: larger than {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InvalidArgument(f"cannot read {path}: {reason}") from exc
    return check_text(text, str(path), profile)


def check_all(
    paths: Sequence[Path], commands: Sequence[str] = (), profile: Profile = Profile.RESTRICTED
) -> list[Finding]:
    """The findings of every file, then of every ``docker run`` command, in order."""
    findings: list[Finding] = []
    for path in paths:
        findings.extend(check_file(path, profile)[1])
    for number, command in enumerate(commands, start=1):
        findings.extend(check_docker_run(command, profile, number if len(commands) > 1 else None))
    return findings
