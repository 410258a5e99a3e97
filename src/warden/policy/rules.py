"""Every rule as data, the facts they share, and the registry that turns small check functions into findings.

A check is a function from one subject (a pod spec, a compose service, a Dockerfile) to the
:class:`Hit` objects it finds; registering it under a rule id gives it that rule's severity,
profile and default fix. Adding a rule is one entry in :data:`RULES` and one small function::

    @POD_CHECKS.rule("host-ports")
    def _host_ports(pod: PodSpec) -> Iterator[Hit]:
        for container in pod.containers:
            ...
            yield Hit(container.at("ports[0].hostPort"), "container 'app' binds host port 80")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from warden.policy.findings import Finding, Profile, Rule, Severity

_B, _R = Profile.BASELINE, Profile.RESTRICTED
_E, _W = Severity.ERROR, Severity.WARNING


RULES: Final[dict[str, Rule]] = {
    rule.id: rule
    for rule in (
        # Pod Security Standards, baseline.
        Rule("host-process", "No Windows HostProcess", _E, _B, "pss-baseline", "remove windowsOptions.hostProcess"),
        Rule("host-network", "No host network", _E, _B, "pss-baseline", "use the container's own network namespace"),
        Rule("host-pid", "No host PID namespace", _E, _B, "pss-baseline", "use the container's own PID namespace"),
        Rule("host-ipc", "No host IPC namespace", _E, _B, "pss-baseline", "use the container's own IPC namespace"),
        Rule("privileged", "No privileged containers", _E, _B, "pss-baseline", "remove privileged mode"),
        Rule(
            "capabilities-baseline",
            "No capabilities beyond the baseline set",
            _E,
            _B,
            "pss-baseline",
            "add no capability outside the default container set (e.g. SYS_ADMIN, NET_RAW, ALL)",
        ),
        Rule("host-path-volume", "No hostPath volumes", _E, _B, "pss-baseline", "use an emptyDir, PVC or CSI volume"),
        Rule("host-ports", "No host ports", _E, _B, "pss-baseline", "remove hostPort; expose the port with a Service"),
        Rule(
            "apparmor",
            "AppArmor not disabled",
            _E,
            _B,
            "pss-baseline",
            "use the runtime's default AppArmor profile (RuntimeDefault) or a Localhost one",
        ),
        Rule(
            "selinux",
            "SELinux not disabled or escalated",
            _E,
            _B,
            "pss-baseline",
            "leave the SELinux user and role unset and use a container_t-like type",
        ),
        Rule("proc-mount", "Default /proc mount", _E, _B, "pss-baseline", "leave procMount unset (Default)"),
        Rule(
            "seccomp-unconfined",
            "Seccomp not unconfined",
            _E,
            _B,
            "pss-baseline",
            "use the runtime's default seccomp profile (RuntimeDefault) or a Localhost one",
        ),
        Rule(
            "sysctls",
            "Only safe sysctls",
            _E,
            _B,
            "pss-baseline",
            "set only namespaced sysctls of the Kubernetes safe set",
        ),
        # Pod Security Standards, restricted.
        Rule(
            "volume-types",
            "Only restricted volume types",
            _E,
            _R,
            "pss-restricted",
            "use configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected or secret",
        ),
        Rule(
            "privilege-escalation",
            "No privilege escalation",
            _E,
            _R,
            "pss-restricted",
            "set allowPrivilegeEscalation: false (no-new-privileges)",
        ),
        Rule("run-as-non-root", "Run as non-root", _E, _R, "pss-restricted", "run as a non-root user"),
        Rule("run-as-user-root", "No user id 0", _E, _R, "pss-restricted", "run as a non-zero user id"),
        Rule(
            "seccomp-profile",
            "Seccomp profile set",
            _E,
            _R,
            "pss-restricted",
            "set seccompProfile.type: RuntimeDefault in the pod's securityContext",
        ),
        Rule("drop-all-capabilities", "Drop all capabilities", _E, _R, "pss-restricted", "drop ALL capabilities"),
        Rule(
            "capabilities-restricted",
            "Add only NET_BIND_SERVICE",
            _E,
            _R,
            "pss-restricted",
            "add no capability other than NET_BIND_SERVICE",
        ),
        # Warden's own.
        Rule("image-digest", "Image pinned by digest", _E, _B, "warden", "pin the image by digest (name@sha256:…)"),
        Rule("memory-limit", "Memory limit set", _E, _B, "warden", "set a memory limit"),
        Rule("cpu-limit", "CPU limit set", _W, _B, "warden", "set a CPU limit"),
        Rule("pids-limit", "Process limit set", _E, _B, "warden", "set a process (pids) limit"),
        Rule("docker-socket", "No container-engine socket", _E, _B, "warden", "do not mount the engine's socket"),
        Rule(
            "sensitive-host-mount",
            "No sensitive host paths",
            _E,
            _B,
            "warden",
            "mount only the data directories the container needs, never /, /etc, /proc, /sys, /dev or /root",
        ),
        Rule(
            "add-from-url",
            "No ADD from a URL",
            _W,
            _B,
            "warden",
            "download with ADD --checksum=sha256:… or RUN curl and verify a checksum",
        ),
        Rule(
            "read-only-root",
            "Read-only root filesystem",
            _E,
            _R,
            "warden",
            "make the root filesystem read-only; write only to volumes",
        ),
        Rule(
            "automount-token",
            "No service-account token",
            _W,
            _R,
            "warden",
            "set automountServiceAccountToken: false in the pod spec",
        ),
    )
}


BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
"""Capabilities Pod Security baseline lets a container add (the container runtimes' default set)."""

RESTRICTED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})

SAFE_SYSCTLS: Final = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
"""The sysctls Pod Security baseline allows (Kubernetes' safe set, as of 1.29)."""

SELINUX_TYPES: Final = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})

RESTRICTED_VOLUME_TYPES: Final = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)

RUNTIME_SOCKETS: Final = frozenset(
    {"docker.sock", "podman.sock", "containerd.sock", "crio.sock", "cri-dockerd.sock", "dockershim.sock"}
)

_SENSITIVE_TREES: Final = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/var/run", "/run", "/var/lib/docker")
_SENSITIVE_EXACT: Final = frozenset({"/", "/var", "/usr", "/lib", "/bin", "/sbin", "/home", "/var/lib", "/var/log"})
_DIGEST = re.compile(r"@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


def image_problem(image: str) -> str | None:
    """Why ``image`` is not pinned, or ``None`` when it names a digest."""
    if "$" in image:
        return f"image '{image}' is chosen at deploy time by a variable not set here; set it to name@sha256:…"
    if _DIGEST.search(image):
        return None
    if "@" in image:
        return f"image '{image}' has a malformed digest"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image '{image}' has no tag and no digest (it means :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest":
        return f"image '{image}' uses the moving tag 'latest'"
    return f"image '{image}' is pinned by tag '{tag}', not by digest"


def capability(name: str) -> str:
    """A capability name as Pod Security spells it: upper case, without ``CAP_``."""
    upper = name.strip().upper()
    return upper.removeprefix("CAP_")


def is_root_user(user: str) -> bool:
    """Whether a ``user[:group]`` names root (by name or uid 0)."""
    return user.split(":", 1)[0].strip() in {"0", "root"}


def runtime_socket(path: str) -> bool:
    """Whether a host path is a container engine's socket (or the directory that holds one)."""
    parts = [part for part in path.split("/") if part]
    return bool(parts) and (parts[-1] in RUNTIME_SOCKETS or path.rstrip("/") in {"/var/run/docker", "/run/containerd"})


def sensitive_host_path(path: str) -> bool:
    """Whether mounting host ``path`` into a container exposes the host (its root, config, kernel or devices)."""
    if not path.startswith("/"):
        return False
    normal = "/" + "/".join(part for part in path.split("/") if part and part != ".")
    return normal in _SENSITIVE_EXACT or any(
        normal == tree or normal.startswith(tree + "/") for tree in _SENSITIVE_TREES
    )


def security_option(option: str) -> tuple[str, str]:
    """A ``--security-opt`` (``seccomp=unconfined``, ``label:disable``, ``no-new-privileges``) as (key, value)."""
    cut = min((at for at in (option.find("="), option.find(":")) if at >= 0), default=-1)
    if cut < 0:
        return option.strip(), "true"
    return option[:cut].strip(), option[cut + 1 :].strip()


@dataclass(frozen=True)
class Hit:
    """What a check function reports: the field at fault, what is wrong, and a fix when the rule's is too general."""

    path: str
    message: str
    fix: str | None = None
    line: int | None = None


S = TypeVar("S")
Check = Callable[[S], Iterable[Hit]]


@dataclass(frozen=True)
class Subject:
    """Where findings about one checked thing go: its source, resource name and starting line."""

    source: str
    resource: str
    line: int | None = None


class Checks(Generic[S]):
    """The checks of one input kind, each registered under a rule of :data:`RULES`."""

    def __init__(self) -> None:
        self._checks: list[tuple[Rule, Check[S]]] = []

    def rule(self, rule_id: str) -> Callable[[Check[S]], Check[S]]:
        """Register the decorated function as the check of ``rule_id``."""

        def register(check: Check[S]) -> Check[S]:
            self.add(rule_id, check)
            return check

        return register

    def add(self, rule_id: str, check: Check[S]) -> None:
        """Register ``check`` under ``rule_id`` (which must be in :data:`RULES`)."""
        self._checks.append((RULES[rule_id], check))

    @property
    def rule_ids(self) -> frozenset[str]:
        """The rules this input kind checks."""
        return frozenset(rule.id for rule, _ in self._checks)

    def run(self, subject: S, where: Subject, profile: Profile) -> Iterator[Finding]:
        """The findings of every check that ``profile`` includes, in registration order."""
        for rule, check in self._checks:
            if not profile.includes(rule.level):
                continue
            for hit in check(subject):
                yield Finding(
                    rule_id=rule.id,
                    severity=rule.severity,
                    source=where.source,
                    resource=where.resource,
                    path=hit.path,
                    message=hit.message,
                    fix=hit.fix or rule.fix,
                    line=hit.line if hit.line is not None else where.line,
                )
