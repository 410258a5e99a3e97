"""Kubernetes workloads: Pod Security baseline and restricted in full, plus Warden's own rules.

Reads Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (and ``kind: List``
of them); other kinds (Service, ConfigMap, …) carry no pod spec and are skipped. Every container
list is checked: ``initContainers``, ``containers`` and ``ephemeralContainers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from warden.policy.findings import Finding, Profile
from warden.policy.rules import (
    BASELINE_CAPABILITIES,
    RESTRICTED_CAPABILITIES,
    RESTRICTED_VOLUME_TYPES,
    SAFE_SYSCTLS,
    SELINUX_TYPES,
    Checks,
    Hit,
    Subject,
    capability,
    image_problem,
    runtime_socket,
)

POD_SPEC_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
"""Where each workload kind keeps its pod spec."""

CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")
_APPARMOR_ANNOTATION: Final = "container.apparmor.security.beta.kubernetes.io/"
_SECCOMP_ANNOTATIONS: Final = (
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/",
)
_CONFINED_TYPES: Final = frozenset({"RuntimeDefault", "Localhost"})


def restricted_container_security() -> dict[str, Any]:
    """A container ``securityContext`` that meets Pod Security "restricted" (with a pod-level seccomp profile).

    One definition for every manifest Warden writes (its own Deployment, training Jobs).
    """
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _get(value: object, *keys: str) -> Any:
    for key in keys:
        value = _map(value).get(key)
    return value


@dataclass(frozen=True)
class Container:
    """One container of a pod spec, with the path that names it."""

    path: str
    spec: Mapping[str, Any]
    kind: str
    """``containers``, ``initContainers`` or ``ephemeralContainers``."""

    @property
    def name(self) -> str:
        return str(self.spec.get("name", "?"))

    @property
    def security(self) -> Mapping[str, Any]:
        return _map(self.spec.get("securityContext"))

    def at(self, field: str) -> str:
        return f"{self.path}.{field}"


@dataclass(frozen=True)
class PodSpec:
    """A pod spec inside a workload, with the paths to it and to its pod template's annotations."""

    path: str
    spec: Mapping[str, Any]
    annotations_path: str
    annotations: Mapping[str, Any]

    @property
    def security(self) -> Mapping[str, Any]:
        return _map(self.spec.get("securityContext"))

    @property
    def containers(self) -> list[Container]:
        return [
            Container(f"{self.path}.{kind}[{index}]", _map(spec), kind)
            for kind in CONTAINER_LISTS
            for index, spec in enumerate(_list(self.spec.get(kind)))
        ]

    def at(self, field: str) -> str:
        return f"{self.path}.{field}"

    def annotation(self, key: str) -> str:
        return f'{self.annotations_path}["{key}"]'


POD_CHECKS: Final = Checks[PodSpec]()


def _both_levels(pod: PodSpec, *keys: str) -> Iterator[tuple[str, str, Any]]:
    """``(path, who, value)`` of a securityContext field at pod level, then in every container."""
    field = ".".join(keys)
    yield pod.at(f"securityContext.{field}"), "the pod", _get(pod.security, *keys)
    for container in pod.containers:
        yield container.at(f"securityContext.{field}"), f"container '{container.name}'", _get(container.security, *keys)


@POD_CHECKS.rule("host-process")
def _host_process(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _both_levels(pod, "windowsOptions", "hostProcess"):
        if value is True:
            yield Hit(path, f"{who} runs as a Windows HostProcess container")


def _host_namespace(field: str, name: str) -> Callable[[PodSpec], Iterator[Hit]]:
    def check(pod: PodSpec) -> Iterator[Hit]:
        if pod.spec.get(field) is True:
            yield Hit(
                pod.at(field), f"the pod shares the host's {name} namespace", f"remove {field} or set it to false"
            )

    return check


POD_CHECKS.add("host-network", _host_namespace("hostNetwork", "network"))
POD_CHECKS.add("host-pid", _host_namespace("hostPID", "PID"))
POD_CHECKS.add("host-ipc", _host_namespace("hostIPC", "IPC"))


@POD_CHECKS.rule("privileged")
def _privileged(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        if container.security.get("privileged") is True:
            yield Hit(
                container.at("securityContext.privileged"),
                f"container '{container.name}' runs privileged",
                "remove securityContext.privileged or set it to false",
            )


def _added(container: Container) -> Iterator[tuple[str, str]]:
    for index, name in enumerate(_list(_get(container.security, "capabilities", "add"))):
        yield container.at(f"securityContext.capabilities.add[{index}]"), capability(str(name))


@POD_CHECKS.rule("capabilities-baseline")
def _capabilities_baseline(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        for path, name in _added(container):
            if name not in BASELINE_CAPABILITIES:
                yield Hit(path, f"container '{container.name}' adds capability {name}", f"remove {name} from add")


@POD_CHECKS.rule("host-path-volume")
def _host_path_volume(pod: PodSpec) -> Iterator[Hit]:
    for index, volume in enumerate(_list(pod.spec.get("volumes"))):
        if "hostPath" in _map(volume):
            host = _get(volume, "hostPath", "path")
            yield Hit(pod.at(f"volumes[{index}].hostPath"), f"volume '{_get(volume, 'name')}' mounts host path {host}")


@POD_CHECKS.rule("docker-socket")
def _docker_socket(pod: PodSpec) -> Iterator[Hit]:
    for index, volume in enumerate(_list(pod.spec.get("volumes"))):
        host = _get(volume, "hostPath", "path")
        if isinstance(host, str) and runtime_socket(host):
            yield Hit(pod.at(f"volumes[{index}].hostPath.path"), f"volume mounts the container engine's socket {host}")


@POD_CHECKS.rule("host-ports")
def _host_ports(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        for index, port in enumerate(_list(container.spec.get("ports"))):
            if _get(port, "hostPort") not in (None, 0):
                yield Hit(
                    container.at(f"ports[{index}].hostPort"),
                    f"container '{container.name}' binds host port {_get(port, 'hostPort')}",
                )


@POD_CHECKS.rule("apparmor")
def _apparmor(pod: PodSpec) -> Iterator[Hit]:
    for key, value in pod.annotations.items():
        if str(key).startswith(_APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            yield Hit(pod.annotation(str(key)), f"AppArmor profile '{value}' for {str(key).split('/', 1)[1]}")
    for path, who, value in _both_levels(pod, "appArmorProfile", "type"):
        if value is not None and value not in _CONFINED_TYPES:
            yield Hit(path, f"{who} runs with AppArmor profile {value}")


@POD_CHECKS.rule("selinux")
def _selinux(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _both_levels(pod, "seLinuxOptions"):
        options = _map(value)
        if options.get("type", "") not in SELINUX_TYPES:
            yield Hit(f"{path}.type", f"{who} runs with SELinux type {options['type']}", "use type container_t")
        for field in ("user", "role"):
            if options.get(field):
                yield Hit(f"{path}.{field}", f"{who} sets SELinux {field} {options[field]}", f"remove {field}")


@POD_CHECKS.rule("proc-mount")
def _proc_mount(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        value = container.security.get("procMount")
        if value not in (None, "Default"):
            yield Hit(container.at("securityContext.procMount"), f"container '{container.name}' has procMount {value}")


@POD_CHECKS.rule("seccomp-unconfined")
def _seccomp_unconfined(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _both_levels(pod, "seccompProfile", "type"):
        if value == "Unconfined":
            yield Hit(path, f"{who} runs without seccomp (Unconfined)")
    for key, value in pod.annotations.items():
        if str(key).startswith(_SECCOMP_ANNOTATIONS) and value == "unconfined":
            yield Hit(pod.annotation(str(key)), "the seccomp annotation says unconfined")


@POD_CHECKS.rule("sysctls")
def _sysctls(pod: PodSpec) -> Iterator[Hit]:
    for index, sysctl in enumerate(_list(pod.security.get("sysctls"))):
        name = _get(sysctl, "name")
        if name not in SAFE_SYSCTLS:
            yield Hit(pod.at(f"securityContext.sysctls[{index}].name"), f"the pod sets unsafe sysctl {name}")


@POD_CHECKS.rule("volume-types")
def _volume_types(pod: PodSpec) -> Iterator[Hit]:
    for index, volume in enumerate(_list(pod.spec.get("volumes"))):
        for kind in sorted(set(_map(volume)) - {"name", "hostPath"} - RESTRICTED_VOLUME_TYPES):
            yield Hit(pod.at(f"volumes[{index}].{kind}"), f"volume '{_get(volume, 'name')}' is of type {kind}")


@POD_CHECKS.rule("privilege-escalation")
def _privilege_escalation(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        if container.security.get("allowPrivilegeEscalation") is not False:
            yield Hit(
                container.at("securityContext.allowPrivilegeEscalation"),
                f"container '{container.name}' may gain privileges (allowPrivilegeEscalation is not false)",
                "set securityContext.allowPrivilegeEscalation: false",
            )


def _inherited(pod: PodSpec, *keys: str) -> Iterator[tuple[str, str, Any]]:
    """``(path, who, effective value)`` of a field a container inherits from the pod: one entry when no
    container sets it, else one per container."""
    pod_value = _get(pod.security, *keys)
    own = [(container, _get(container.security, *keys)) for container in pod.containers]
    field = ".".join(keys)
    if all(value is None for _, value in own):
        yield pod.at(f"securityContext.{field}"), "the pod", pod_value
        return
    for container, value in own:
        effective = pod_value if value is None else value
        yield container.at(f"securityContext.{field}"), f"container '{container.name}'", effective


@POD_CHECKS.rule("run-as-non-root")
def _run_as_non_root(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _inherited(pod, "runAsNonRoot"):
        if value is not True:
            yield Hit(path, f"{who} may run as root (runAsNonRoot is not true)", "set runAsNonRoot: true")


@POD_CHECKS.rule("run-as-user-root")
def _run_as_user_root(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _both_levels(pod, "runAsUser"):
        if value == 0:
            yield Hit(path, f"{who} runs as user id 0", "set runAsUser to a non-zero id, e.g. 10001")


@POD_CHECKS.rule("seccomp-profile")
def _seccomp_profile(pod: PodSpec) -> Iterator[Hit]:
    for path, who, value in _inherited(pod, "seccompProfile", "type"):
        if value is None:
            yield Hit(path, f"{who} has no seccomp profile")
        elif value not in _CONFINED_TYPES and value != "Unconfined":  # Unconfined is seccomp-unconfined's
            yield Hit(path, f"{who} has seccomp profile type {value}")


@POD_CHECKS.rule("drop-all-capabilities")
def _drop_all(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        dropped = {capability(str(name)) for name in _list(_get(container.security, "capabilities", "drop"))}
        if "ALL" not in dropped:
            yield Hit(
                container.at("securityContext.capabilities.drop"),
                f"container '{container.name}' does not drop ALL capabilities",
                "set securityContext.capabilities.drop: [ALL]",
            )


@POD_CHECKS.rule("capabilities-restricted")
def _capabilities_restricted(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        for path, name in _added(container):
            if name in BASELINE_CAPABILITIES - RESTRICTED_CAPABILITIES:  # others are capabilities-baseline's
                yield Hit(path, f"container '{container.name}' adds capability {name}", f"remove {name} from add")


@POD_CHECKS.rule("image-digest")
def _image_digest(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        image = container.spec.get("image")
        problem = image_problem(str(image)) if image is not None else f"container '{container.name}' names no image"
        if problem:
            yield Hit(container.at("image"), problem, "pin the image by digest: image: name@sha256:…")


def _limit(resource: str) -> Callable[[PodSpec], Iterator[Hit]]:
    def check(pod: PodSpec) -> Iterator[Hit]:
        for container in pod.containers:
            if (
                container.kind != "ephemeralContainers"
                and _get(container.spec, "resources", "limits", resource) is None
            ):
                yield Hit(
                    container.at(f"resources.limits.{resource}"),
                    f"container '{container.name}' has no {resource} limit",
                    f"set resources.limits.{resource}",
                )

    return check


POD_CHECKS.add("memory-limit", _limit("memory"))
POD_CHECKS.add("cpu-limit", _limit("cpu"))


@POD_CHECKS.rule("read-only-root")
def _read_only_root(pod: PodSpec) -> Iterator[Hit]:
    for container in pod.containers:
        if container.kind != "ephemeralContainers" and container.security.get("readOnlyRootFilesystem") is not True:
            yield Hit(
                container.at("securityContext.readOnlyRootFilesystem"),
                f"container '{container.name}' can write to its root filesystem",
                "set securityContext.readOnlyRootFilesystem: true",
            )


@POD_CHECKS.rule("automount-token")
def _automount_token(pod: PodSpec) -> Iterator[Hit]:
    if pod.spec.get("automountServiceAccountToken") is not False:
        yield Hit(pod.at("automountServiceAccountToken"), "the service-account token is mounted into the pod")


def workloads(document: object) -> Iterator[tuple[str, PodSpec]]:
    """``(resource, pod spec)`` of every workload in one YAML document (``kind: List`` included)."""
    kind = _get(document, "kind")
    if kind == "List":
        for item in _list(_get(document, "items")):
            yield from workloads(item)
        return
    keys = POD_SPEC_PATHS.get(str(kind))
    if keys is None:
        return
    spec = _get(document, *keys)
    if not isinstance(spec, Mapping):
        return
    if keys == ("spec",):
        annotations_path, annotations = "metadata.annotations", _get(document, "metadata", "annotations")
    else:
        template = keys[:-1]
        annotations_path = ".".join((*template, "metadata", "annotations"))
        annotations = _get(document, *template, "metadata", "annotations")
    name = _get(document, "metadata", "name") or "<unnamed>"
    yield f"{kind}/{name}", PodSpec(".".join(keys), spec, annotations_path, _map(annotations))


def is_manifest(document: object) -> bool:
    """Whether a YAML document looks like a Kubernetes object (it has ``apiVersion`` and ``kind``)."""
    return isinstance(document, Mapping) and "apiVersion" in document and "kind" in document


def check_manifests(documents: list[tuple[int, object]], source: str, profile: Profile) -> list[Finding]:
    """The findings of every workload in ``documents`` (``(line, document)`` pairs of one file)."""
    findings: list[Finding] = []
    for line, document in documents:
        for resource, pod in workloads(document):
            findings.extend(POD_CHECKS.run(pod, Subject(source, resource, line), profile))
    return findings
