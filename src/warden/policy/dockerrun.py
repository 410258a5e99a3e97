"""``docker run`` and ``podman run`` command lines, read with :mod:`shlex` and checked as a compose service would be.

``sudo``, ``docker container run`` and options after the image (the container's own command)
are understood; an option this parser does not know is taken to have a value unless it is one
of the engines' boolean flags.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Final

from warden.errors import InvalidArgument
from warden.policy.compose import ENGINE_CHECKS, EngineContainer
from warden.policy.findings import Finding, Profile
from warden.policy.rules import Subject

ENGINES: Final = frozenset({"docker", "podman", "nerdctl"})
_BOOLEAN_LONG: Final = frozenset(
    {
        "--detach",
        "--interactive",
        "--tty",
        "--rm",
        "--privileged",
        "--read-only",
        "--init",
        "--publish-all",
        "--no-healthcheck",
        "--oom-kill-disable",
        "--quiet",
        "--help",
        "--sig-proxy",
        "--disable-content-trust",
        "--replace",
        "--rootfs",
        "--read-only-tmpfs",
        "--http-proxy",
        "--no-hosts",
        "--env-host",
        "--use-api-socket",
    }
)
_BOOLEAN_SHORT: Final = frozenset("ditPq")
_SHORT_NAMES: Final = {"-v": "--volume", "-u": "--user", "-m": "--memory", "-e": "--env", "-p": "--publish"}
_LIST_KEYS: Final = {
    "--cap-add": "cap_add",
    "--cap-drop": "cap_drop",
    "--security-opt": "security_opt",
    "--volume": "volumes",
    "--mount": "volumes",
    "--sysctl": "sysctls",
}
_VALUE_KEYS: Final = {
    "--network": "network_mode",
    "--net": "network_mode",
    "--pid": "pid",
    "--ipc": "ipc",
    "--user": "user",
    "--memory": "mem_limit",
    "--pids-limit": "pids_limit",
}
_BOOLEAN_KEYS: Final = {
    "--privileged": "privileged",
    "--read-only": "read_only",
    "--use-api-socket": "use_api_socket",
}


@dataclass(frozen=True)
class DockerRun:
    """A parsed command line: the engine, every option as ``(name, value, as written)``, and the image."""

    engine: str
    options: tuple[tuple[str, str | None, str], ...]
    image: str


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise InvalidArgument(f"cannot read the docker run command: {exc}") from exc
    while words and (words[0] in {"sudo", "env"} or "=" in words[0] or words[0].startswith("-")):
        words.pop(0)  # sudo, env and their flags, and VAR=value before the engine
    engine = words[0].rsplit("/", 1)[-1] if words else ""
    if engine not in ENGINES:
        raise InvalidArgument(f"not a docker or podman run command: {command!r}")
    rest = words[1:]
    if rest[:2] == ["container", "run"]:
        return [engine, *rest[2:]]
    if rest[:1] != ["run"]:
        raise InvalidArgument(f"not a '{engine} run' command: {command!r}")
    return [engine, *rest[1:]]


def parse(command: str) -> DockerRun:
    """Parse a ``docker run`` (or ``podman run``) command line; a bad one raises :class:`InvalidArgument`."""
    engine, *words = _words(command)
    options: list[tuple[str, str | None, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            name, equals, value = word.partition("=")
            if equals:
                options.append((name, value, word))
            elif name in _BOOLEAN_LONG:
                options.append((name, None, word))
            elif index + 1 < len(words):
                options.append((name, words[index + 1], f"{word} {words[index + 1]}"))
                index += 1
            else:
                raise InvalidArgument(f"option {name} needs a value")
        else:
            letters = word[1:]
            while letters and letters[0] in _BOOLEAN_SHORT:
                options.append((f"-{letters[0]}", None, f"-{letters[0]}"))
                letters = letters[1:]
            if letters:
                name = _SHORT_NAMES.get(f"-{letters[0]}", f"-{letters[0]}")
                if len(letters) > 1:
                    options.append((name, letters[1:].removeprefix("="), word))
                elif index + 1 < len(words):
                    options.append((name, words[index + 1], f"{word} {words[index + 1]}"))
                    index += 1
                else:
                    raise InvalidArgument(f"option {word} needs a value")
        index += 1
    if index >= len(words):
        raise InvalidArgument(f"the {engine} run command names no image")
    return DockerRun(engine, tuple(options), words[index])


def _mount(spec: str) -> dict[str, Any]:
    """A ``--mount type=bind,source=/,target=/host`` as compose's long volume syntax."""
    fields = dict(part.partition("=")[::2] for part in spec.split(","))
    source = fields.get("source") or fields.get("src")
    return {"type": fields.get("type", "volume"), "source": source}


def container(run: DockerRun) -> EngineContainer:
    """The command as an engine container in compose's keys, remembering how each option was written."""
    settings: dict[str, Any] = {"image": run.image}
    flags: dict[str, list[str]] = {"image": [run.image]}
    for name, value, written in run.options:
        if name in _BOOLEAN_KEYS:
            key = _BOOLEAN_KEYS[name]
            settings[key] = value is None or value.lower() == "true"
        elif name in _VALUE_KEYS and value is not None:
            key = _VALUE_KEYS[name]
            settings[key] = value
        elif name in _LIST_KEYS and value is not None:
            key = _LIST_KEYS[name]
            items: list[Any] = [_mount(value)] if name == "--mount" else [value]
            if key in {"cap_add", "cap_drop"}:
                items = [item for item in value.split(",") if item]
            settings.setdefault(key, []).extend(items)
            flags.setdefault(key, []).extend([written] * len(items))
            continue
        else:
            continue
        flags[key] = [written]
    return EngineContainer(run.engine, settings, flags)


def check_docker_run(command: str, profile: Profile, number: int | None = None) -> list[Finding]:
    """The findings of one ``docker run`` command line; ``number`` tells several apart (``docker run #2``)."""
    run = parse(command)
    resource = f"{run.engine} run"
    source = resource if number is None else f"{resource} #{number}"
    return list(ENGINE_CHECKS.run(container(run), Subject(source, resource), profile))
