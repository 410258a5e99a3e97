"""Dockerfiles: base images pinned by digest, a non-root USER at the end, ADD from URLs, and the parser."""

from __future__ import annotations

import pytest

from tests.policy.samples import DIGEST, HARDENED_DOCKERFILE
from warden.policy import Finding, Profile, check_text
from warden.policy.check import InputKind
from warden.policy.dockerfile import instructions, parse


def findings_of(text: str, name: str = "Dockerfile", profile: Profile = Profile.RESTRICTED) -> list[Finding]:
    kind, findings = check_text(text, name, profile)
    assert kind is InputKind.DOCKERFILE
    return findings


def rule_ids(text: str, profile: Profile = Profile.RESTRICTED) -> list[str]:
    return [finding.rule_id for finding in check_text(text, "Dockerfile", profile)[1]]


def test_when_a_dockerfile_is_hardened_then_nothing_is_found() -> None:
    assert findings_of(HARDENED_DOCKERFILE) == []


CASES: list[tuple[str, str, list[str]]] = [
    ("tag", "FROM python:3.12-slim\nUSER app\n", ["image-digest"]),
    ("latest", "FROM python:latest\nUSER app\n", ["image-digest"]),
    ("bare", "FROM python\nUSER app\n", ["image-digest"]),
    ("platform-flag", f"FROM --platform=linux/amd64 python@{DIGEST}\nUSER app\n", []),
    ("scratch", "FROM scratch\nCOPY app /app\nUSER 65532\n", []),
    ("earlier-stage", f"FROM python@{DIGEST} AS build\nRUN make\nFROM build\nUSER app\n", []),
    ("unresolved-arg", "ARG BASE\nFROM ${BASE}\nUSER app\n", ["image-digest"]),
    ("no-user", f"FROM python@{DIGEST}\nRUN make\n", ["run-as-non-root"]),
    ("user-only-in-builder", f"FROM python@{DIGEST} AS b\nUSER app\nFROM python@{DIGEST}\n", ["run-as-non-root"]),
    ("user-inherited", f"FROM python@{DIGEST} AS b\nUSER app\nFROM b\nRUN true\n", []),
    ("user-root-last", f"FROM python@{DIGEST}\nUSER app\nRUN make\nUSER root\n", ["run-as-user-root"]),
    ("user-zero-last", f"FROM python@{DIGEST}\nUSER 0:0\n", ["run-as-user-root"]),
    ("user-root-then-app", f"FROM python@{DIGEST}\nUSER root\nRUN make\nUSER 10001\n", []),
    ("add-url", f"FROM python@{DIGEST}\nADD https://example.com/x.tgz /opt/\nUSER app\n", ["add-from-url"]),
    ("add-checksum", f"FROM python@{DIGEST}\nADD --checksum=sha256:{'c' * 64} https://e.x/x /x\nUSER app\n", []),
    ("add-url-json", f'FROM python@{DIGEST}\nADD ["https://e.x/a.tgz", "/opt/"]\nUSER app\n', ["add-from-url"]),
    ("add-git", f"FROM python@{DIGEST}\nADD git@github.com:org/repo.git /src\nUSER app\n", ["add-from-url"]),
    ("add-local", f"FROM python@{DIGEST}\nADD app.tgz /opt/\nUSER app\n", []),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_when_one_instruction_changes_then_exactly_its_rule_fires(text: str, expected: list[str]) -> None:
    assert rule_ids(text) == expected


def test_when_a_finding_is_made_then_it_names_the_file_and_line() -> None:
    text = "# comment\nFROM python:3.12 AS build\nRUN make\n\nFROM debian:12\nUSER root\n"
    findings = check_text(text, "docker/app/Dockerfile")[1]
    assert [(f.rule_id, f.resource, f.path, f.line) for f in findings] == [
        ("image-digest", "Dockerfile:2", "FROM python:3.12 AS build", 2),
        ("image-digest", "Dockerfile:5", "FROM debian:12", 5),
        ("run-as-user-root", "Dockerfile:6", "USER root", 6),
    ]
    assert findings[0].source == "docker/app/Dockerfile"


def test_when_the_profile_is_baseline_then_the_user_is_not_asked_for() -> None:
    assert rule_ids("FROM python:3\nADD http://e.x/a /a\n", Profile.BASELINE) == ["image-digest", "add-from-url"]


def test_when_lines_continue_then_the_instruction_is_joined_and_comments_inside_are_skipped() -> None:
    text = "FROM alpine \\\n  # between\n  AS base\nRUN apk add \\\n    curl\n"
    parsed = instructions(text)
    assert [(i.line, i.keyword, i.arguments) for i in parsed] == [
        (1, "FROM", "alpine AS base"),
        (4, "RUN", "apk add curl"),
    ]


def test_when_the_escape_directive_is_a_backtick_then_it_continues_lines() -> None:
    parsed = instructions("# escape=`\nFROM mcr.microsoft.com/windows `\n  AS base\n")
    assert [(i.keyword, i.arguments) for i in parsed] == [("FROM", "mcr.microsoft.com/windows AS base")]


def test_when_a_heredoc_holds_instruction_words_then_they_are_not_read_as_instructions() -> None:
    text = f"FROM python@{DIGEST}\nRUN <<EOF\nFROM nothing:latest\nUSER root\nEOF\nUSER app\n"
    assert [i.keyword for i in instructions(text)] == ["FROM", "RUN", "USER"]
    assert rule_ids(text) == []


def test_when_args_have_defaults_then_the_base_image_is_resolved() -> None:
    dockerfile = parse("ARG TAG=3.12\nARG REPO\nFROM ${REPO:-python}:$TAG\n")
    assert dockerfile.stages[0].base == "python:3.12"


@pytest.mark.parametrize(
    "name", ["Dockerfile", "Containerfile", "Dockerfile.gpu", "app.dockerfile", "build/Dockerfile"]
)
def test_when_the_file_is_named_like_a_dockerfile_then_it_is_read_as_one(name: str) -> None:
    assert check_text("FROM python:3\n", name)[0] is InputKind.DOCKERFILE


def test_when_a_file_of_another_name_starts_with_from_then_it_is_read_as_a_dockerfile() -> None:
    assert check_text("# base\nARG V=1\nFROM python:$V\n", "image.build")[0] is InputKind.DOCKERFILE
