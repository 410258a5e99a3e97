"""docker-compose services, and the container-engine checks that ``docker run`` command lines share.

A compose service and a ``docker run`` command say the same things (``privileged``,
``network_mode``, ``cap_add``, ``security_opt``, ``volumes``, ``user``, ``mem_limit``, …), so both
become an :class:`EngineContainer` with compose's keys; only how a field is named differs
(``services.api.privileged`` or ``--privileged``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from warden.policy.findings import Finding, Profile
from warden.policy.interpolation import interpolate
from warden.policy.rules import (
    BASELINE_CAPABILITIES,
    RESTRICTED_CAPABILITIES,
    SAFE_SYSCTLS,
    SELINUX_TYPES,
    Checks,
    Hit,
    Subject,
    capability,
    image_problem,
    is_root_user,
    runtime_socket,
    security_option,
    sensitive_host_path,
)

DOCKER_FLAGS: Final[dict[str, str]] = {
    "privileged": "--privileged",
    "network_mode": "--network",
    "pid": "--pid",
    "ipc": "--ipc",
    "cap_add": "--cap-add",
    "cap_drop": "--cap-drop",
    "security_opt": "--security-opt",
    "volumes": "-v",
    "sysctls": "--sysctl",
    "read_only": "--read-only",
    "use_api_socket": "--use-api-socket",
    "user": "--user",
    "mem_limit": "--memory",
    "pids_limit": "--pids-limit",
    "image": "IMAGE",
}
"""The ``docker run`` flag for each compose key."""

_NO_NEW_PRIVILEGES: Final = "[no-new-privileges:true]"


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class EngineContainer:
    """One container as a container engine runs it, in compose's keys.

    ``flags`` is ``None`` for a compose service; for a ``docker run`` command it holds, per key,
    the options as written, so that a finding names ``-v /:/host`` rather than ``volumes[0]``.
    """

    name: str
    settings: Mapping[str, Any]
    flags: Mapping[str, Sequence[str]] | None = field(default=None)

    def at(self, key: str, index: int | None = None) -> str:
        """The field path of ``key`` (and its ``index``-th item)."""
        if self.flags is None:
            return f"services.{self.name}.{key}" + ("" if index is None else f"[{index}]")
        written = self.flags.get(key, ())
        if index is not None and index < len(written):
            return written[index]
        return written[-1] if written else DOCKER_FLAGS.get(key, key)

    def setting(self, key: str, example: str) -> str:
        """How to write ``key`` with value ``example`` in this input kind."""
        if self.flags is None:
            return f"{key}: {example}"
        return f"{DOCKER_FLAGS[key]} {example}".strip()

    def get(self, key: str) -> Any:
        return self.settings.get(key)

    def security_options(self) -> Iterator[tuple[int, str, str]]:
        for index, option in enumerate(_list(self.get("security_opt"))):
            key, value = security_option(str(option))
            yield index, key, value

    def host_mounts(self) -> Iterator[tuple[int, str]]:
        """``(index, host path)`` of every bind mount (short ``SRC:DST[:MODE]`` or long syntax)."""
        for index, volume in enumerate(_list(self.get("volumes"))):
            if isinstance(volume, Mapping):
                if volume.get("type", "bind") == "bind" and isinstance(volume.get("source"), str):
                    yield index, volume["source"]
            elif isinstance(volume, str) and volume.startswith(("/", ".", "~")):
                yield index, volume.split(":", 1)[0]

    def limit(self, key: str, deploy_key: str) -> str | None:
        value = self.get(key)
        if value is None:
            value = _map(_map(_map(self.get("deploy")).get("resources")).get("limits")).get(deploy_key)
        return None if value is None else str(value)


ENGINE_CHECKS: Final = Checks[EngineContainer]()
EngineCheck = Callable[[EngineContainer], Iterator[Hit]]


@ENGINE_CHECKS.rule("privileged")
def _privileged(container: EngineContainer) -> Iterator[Hit]:
    if container.get("privileged") is True:
        yield Hit(container.at("privileged"), "the container runs privileged", "remove privileged mode")


def _host_namespace(key: str, name: str) -> EngineCheck:
    def check(container: EngineContainer) -> Iterator[Hit]:
        if container.get(key) == "host":
            yield Hit(
                container.at(key),
                f"the container shares the host's {name} namespace",
                f"remove {container.setting(key, 'host')}",
            )

    return check


ENGINE_CHECKS.add("host-network", _host_namespace("network_mode", "network"))
ENGINE_CHECKS.add("host-pid", _host_namespace("pid", "PID"))
ENGINE_CHECKS.add("host-ipc", _host_namespace("ipc", "IPC"))


def _added(container: EngineContainer) -> Iterator[tuple[int, str]]:
    for index, name in enumerate(_list(container.get("cap_add"))):
        yield index, capability(str(name))


@ENGINE_CHECKS.rule("capabilities-baseline")
def _capabilities_baseline(container: EngineContainer) -> Iterator[Hit]:
    for index, name in _added(container):
        if name not in BASELINE_CAPABILITIES:
            yield Hit(container.at("cap_add", index), f"the container adds capability {name}", f"do not add {name}")


@ENGINE_CHECKS.rule("capabilities-restricted")
def _capabilities_restricted(container: EngineContainer) -> Iterator[Hit]:
    for index, name in _added(container):
        if name in BASELINE_CAPABILITIES - RESTRICTED_CAPABILITIES:
            yield Hit(container.at("cap_add", index), f"the container adds capability {name}", f"do not add {name}")


@ENGINE_CHECKS.rule("drop-all-capabilities")
def _drop_all(container: EngineContainer) -> Iterator[Hit]:
    if "ALL" not in {capability(str(name)) for name in _list(container.get("cap_drop"))}:
        yield Hit(
            container.at("cap_drop"),
            "the container keeps the engine's default capabilities",
            f"add {container.setting('cap_drop', '[ALL]' if container.flags is None else 'ALL')}",
        )


def _option_check(key: str, bad: Callable[[str], bool], what: str) -> EngineCheck:
    def check(container: EngineContainer) -> Iterator[Hit]:
        for index, option_key, value in container.security_options():
            if option_key == key and bad(value):
                yield Hit(container.at("security_opt", index), f"the container runs with {what} ({key}={value})")

    return check


def _bad_label(value: str) -> bool:
    kind, _, label = value.partition(":")
    return kind == "disable" or kind in {"user", "role"} or (kind == "type" and label not in SELINUX_TYPES)


ENGINE_CHECKS.add("seccomp-unconfined", _option_check("seccomp", lambda value: value == "unconfined", "no seccomp"))
ENGINE_CHECKS.add("apparmor", _option_check("apparmor", lambda value: value == "unconfined", "no AppArmor"))
ENGINE_CHECKS.add("selinux", _option_check("label", _bad_label, "SELinux separation weakened"))
ENGINE_CHECKS.add(
    "proc-mount", _option_check("systempaths", lambda value: value == "unconfined", "an unmasked /proc and /sys")
)


@ENGINE_CHECKS.rule("sysctls")
def _sysctls(container: EngineContainer) -> Iterator[Hit]:
    sysctls = container.get("sysctls")
    if isinstance(sysctls, Mapping):  # compose's map form: the key names the field
        named = [(f"{container.at('sysctls')}.{name}", str(name)) for name in sysctls]
    else:
        items = _list(sysctls)
        named = [(container.at("sysctls", index), str(item).split("=", 1)[0]) for index, item in enumerate(items)]
    for path, name in named:
        if name.strip() not in SAFE_SYSCTLS:
            yield Hit(path, f"the container sets unsafe sysctl {name}", f"do not set {name}")


@ENGINE_CHECKS.rule("docker-socket")
def _docker_socket(container: EngineContainer) -> Iterator[Hit]:
    if container.get("use_api_socket") is True:
        yield Hit(container.at("use_api_socket"), "the container is given the engine's API socket")
    for index, host in container.host_mounts():
        if runtime_socket(host):
            yield Hit(container.at("volumes", index), f"the container mounts the container engine's socket {host}")


@ENGINE_CHECKS.rule("sensitive-host-mount")
def _sensitive_host_mount(container: EngineContainer) -> Iterator[Hit]:
    for index, host in container.host_mounts():
        if sensitive_host_path(host) and not runtime_socket(host):
            what = "the host's root filesystem" if host.rstrip("/") == "" else f"host path {host}"
            yield Hit(container.at("volumes", index), f"the container mounts {what}")


@ENGINE_CHECKS.rule("privilege-escalation")
def _privilege_escalation(container: EngineContainer) -> Iterator[Hit]:
    if not any(key == "no-new-privileges" and value != "false" for _, key, value in container.security_options()):
        yield Hit(
            container.at("security_opt"),
            "the container's processes may gain privileges (no no-new-privileges)",
            f"add {container.setting('security_opt', 'no-new-privileges' if container.flags else _NO_NEW_PRIVILEGES)}",
        )


@ENGINE_CHECKS.rule("read-only-root")
def _read_only_root(container: EngineContainer) -> Iterator[Hit]:
    if container.get("read_only") is not True:
        yield Hit(
            container.at("read_only"),
            "the container can write to its root filesystem",
            f"add {container.setting('read_only', '' if container.flags else 'true')}",
        )


@ENGINE_CHECKS.rule("run-as-non-root")
def _run_as_non_root(container: EngineContainer) -> Iterator[Hit]:
    if container.get("user") is None:
        yield Hit(
            container.at("user"),
            "no user is set: the container runs as the image's user, root unless the image says otherwise",
            f"add {container.setting('user', '10001:10001')}",
        )


@ENGINE_CHECKS.rule("run-as-user-root")
def _run_as_user_root(container: EngineContainer) -> Iterator[Hit]:
    user = container.get("user")
    if user is not None and is_root_user(str(user)):
        yield Hit(container.at("user"), f"the container runs as root (user {user})", "use a non-zero user id")


def _limit(key: str, deploy_key: str, name: str, example: str) -> EngineCheck:
    def check(container: EngineContainer) -> Iterator[Hit]:
        value = container.limit(key, deploy_key)
        if value is None or value.strip() in {"0", "-1"}:  # both mean unlimited to the engines
            yield Hit(container.at(key), f"the container has no {name} limit", f"add {container.setting(key, example)}")

    return check


ENGINE_CHECKS.add("memory-limit", _limit("mem_limit", "memory", "memory", "2g"))
ENGINE_CHECKS.add("pids-limit", _limit("pids_limit", "pids", "process (pids)", "256"))


@ENGINE_CHECKS.rule("image-digest")
def _image_digest(container: EngineContainer) -> Iterator[Hit]:
    image = container.get("image")
    problem = image_problem(str(image)) if image is not None else None
    if problem:
        yield Hit(container.at("image"), problem, "pin the image by digest: name@sha256:…")


def is_compose(document: object) -> bool:
    """Whether a YAML document looks like a compose file: a ``services`` mapping and no Kubernetes ``kind``."""
    return isinstance(document, Mapping) and isinstance(document.get("services"), Mapping) and "kind" not in document


def check_compose(
    documents: list[tuple[int, object]], source: str, profile: Profile, environ: Mapping[str, str] | None = None
) -> list[Finding]:
    """The findings of every service of a compose file, its ``${VAR}`` references resolved from ``environ``.

    ``environ`` defaults to this process's environment, which is what ``docker compose`` reads.
    """
    findings: list[Finding] = []
    variables = os.environ if environ is None else environ
    for line, document in documents:
        if not is_compose(document):
            continue
        for name, service in _map(_map(document).get("services")).items():
            container = EngineContainer(str(name), _map(interpolate(service, variables)))
            findings.extend(ENGINE_CHECKS.run(container, Subject(source, f"service {name}", line), profile))
    return findings
