"""Kubernetes workloads: every Pod Security rule and every Warden rule, one field at a time, on every kind."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.policy.samples import DELETE, changed, hardened_pod_spec, workload
from warden.policy import Profile, check_text
from warden.policy.check import InputKind
from warden.policy.kubernetes import POD_SPEC_PATHS

KINDS = sorted(POD_SPEC_PATHS)
C0 = "containers.0"
SC = f"{C0}.securityContext"


def findings_of(document: dict[str, Any], profile: Profile = Profile.RESTRICTED) -> list[Any]:
    kind, findings = check_text(yaml.safe_dump(document), "manifest.yaml", profile)
    assert kind is InputKind.KUBERNETES
    return findings


def rule_ids(pod_spec: dict[str, Any], profile: Profile = Profile.RESTRICTED, kind: str = "Deployment") -> set[str]:
    return {finding.rule_id for finding in findings_of(workload(kind, pod_spec), profile)}


@pytest.mark.parametrize("kind", KINDS)
def test_when_every_workload_kind_is_hardened_then_restricted_finds_nothing(kind: str) -> None:
    assert findings_of(workload(kind, hardened_pod_spec())) == []


@pytest.mark.parametrize("kind", KINDS)
def test_when_a_workload_is_privileged_then_the_finding_names_its_resource_and_field(kind: str) -> None:
    pod = changed(hardened_pod_spec(), f"{SC}.privileged", True)
    [finding] = findings_of(workload(kind, pod, name="api"))
    prefix = ".".join(POD_SPEC_PATHS[kind])
    assert finding.rule_id == "privileged"
    assert finding.severity.value == "error"
    assert finding.resource == f"{kind}/api"
    assert finding.path == f"{prefix}.containers[0].securityContext.privileged"
    assert finding.fix


CASES: list[tuple[str, str, object, set[str]]] = [
    # Pod Security baseline
    ("host-process-pod", "securityContext.windowsOptions", {"hostProcess": True}, {"host-process"}),
    ("host-process-container", f"{SC}.windowsOptions", {"hostProcess": True}, {"host-process"}),
    ("host-network", "hostNetwork", True, {"host-network"}),
    ("host-pid", "hostPID", True, {"host-pid"}),
    ("host-ipc", "hostIPC", True, {"host-ipc"}),
    ("host-network-false", "hostNetwork", False, set()),
    ("privileged", f"{SC}.privileged", True, {"privileged"}),
    ("privileged-false", f"{SC}.privileged", False, set()),
    ("cap-sys-admin", f"{SC}.capabilities.add", ["SYS_ADMIN"], {"capabilities-baseline"}),
    ("cap-all", f"{SC}.capabilities.add", ["ALL"], {"capabilities-baseline"}),
    ("cap-net-raw", f"{SC}.capabilities.add", ["CAP_NET_RAW"], {"capabilities-baseline"}),
    ("host-path", "volumes", [{"name": "h", "hostPath": {"path": "/srv"}}], {"host-path-volume"}),
    ("host-port", f"{C0}.ports", [{"containerPort": 80, "hostPort": 80}], {"host-ports"}),
    ("host-port-zero", f"{C0}.ports", [{"containerPort": 80, "hostPort": 0}], set()),
    ("apparmor-pod", "securityContext.appArmorProfile", {"type": "Unconfined"}, {"apparmor"}),
    ("apparmor-container", f"{SC}.appArmorProfile", {"type": "Unconfined"}, {"apparmor"}),
    ("apparmor-localhost", f"{SC}.appArmorProfile", {"type": "Localhost", "localhostProfile": "p"}, set()),
    ("selinux-type", "securityContext.seLinuxOptions", {"type": "spc_t"}, {"selinux"}),
    ("selinux-user", f"{SC}.seLinuxOptions", {"user": "system_u"}, {"selinux"}),
    ("selinux-role", f"{SC}.seLinuxOptions", {"role": "sysadm_r"}, {"selinux"}),
    ("selinux-allowed", f"{SC}.seLinuxOptions", {"type": "container_t", "level": "s0:c1,c2"}, set()),
    ("proc-mount", f"{SC}.procMount", "Unmasked", {"proc-mount"}),
    ("proc-mount-default", f"{SC}.procMount", "Default", set()),
    ("seccomp-pod-unconfined", "securityContext.seccompProfile", {"type": "Unconfined"}, {"seccomp-unconfined"}),
    ("seccomp-container-unconfined", f"{SC}.seccompProfile", {"type": "Unconfined"}, {"seccomp-unconfined"}),
    ("sysctl-unsafe", "securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], {"sysctls"}),
    ("sysctl-safe", "securityContext.sysctls", [{"name": "net.ipv4.tcp_syncookies", "value": "1"}], set()),
    # Pod Security restricted
    ("volume-nfs", "volumes", [{"name": "n", "nfs": {"server": "s", "path": "/"}}], {"volume-types"}),
    ("volume-allowed", "volumes", [{"name": "c", "configMap": {"name": "c"}}, {"name": "p", "projected": {}}], set()),
    ("escalation-unset", f"{SC}.allowPrivilegeEscalation", DELETE, {"privilege-escalation"}),
    ("escalation-true", f"{SC}.allowPrivilegeEscalation", True, {"privilege-escalation"}),
    ("non-root-unset", "securityContext.runAsNonRoot", DELETE, {"run-as-non-root"}),
    ("non-root-false", "securityContext.runAsNonRoot", False, {"run-as-non-root"}),
    ("non-root-container-false", f"{SC}.runAsNonRoot", False, {"run-as-non-root"}),
    ("run-as-user-0-pod", "securityContext.runAsUser", 0, {"run-as-user-root"}),
    ("run-as-user-0-container", f"{SC}.runAsUser", 0, {"run-as-user-root"}),
    ("seccomp-unset", "securityContext.seccompProfile", DELETE, {"seccomp-profile"}),
    ("seccomp-localhost", "securityContext.seccompProfile", {"type": "Localhost", "localhostProfile": "p"}, set()),
    ("drop-not-all", f"{SC}.capabilities.drop", ["NET_RAW"], {"drop-all-capabilities"}),
    ("add-chown", f"{SC}.capabilities.add", ["CHOWN"], {"capabilities-restricted"}),
    ("add-net-bind", f"{SC}.capabilities.add", ["NET_BIND_SERVICE"], set()),
    # Warden's own
    ("image-tag", f"{C0}.image", "registry.example/app:1.2", {"image-digest"}),
    ("image-latest", f"{C0}.image", "app:latest", {"image-digest"}),
    ("image-bare", f"{C0}.image", "app", {"image-digest"}),
    ("image-tag-and-digest", f"{C0}.image", "app:1.2@sha256:" + "b" * 64, set()),
    ("memory-limit", f"{C0}.resources.limits.memory", DELETE, {"memory-limit"}),
    ("cpu-limit", f"{C0}.resources.limits.cpu", DELETE, {"cpu-limit"}),
    ("read-only-root", f"{SC}.readOnlyRootFilesystem", False, {"read-only-root"}),
    ("automount-token", "automountServiceAccountToken", DELETE, {"automount-token"}),
    ("automount-token-true", "automountServiceAccountToken", True, {"automount-token"}),
]


@pytest.mark.parametrize(("path", "value", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_when_one_field_is_changed_then_exactly_its_rule_fires(path: str, value: object, expected: set[str]) -> None:
    assert rule_ids(changed(hardened_pod_spec(), path, value)) == expected


def test_when_a_docker_socket_is_mounted_then_it_is_named_besides_the_host_path() -> None:
    volumes = [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}}]
    assert rule_ids(changed(hardened_pod_spec(), "volumes", volumes)) == {"host-path-volume", "docker-socket"}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("unconfined", {"apparmor"}),
        ("runtime/default", set()),
        ("localhost/my-profile", set()),
    ],
)
def test_when_the_apparmor_annotation_is_set_then_only_unconfined_profiles_fire(
    annotation: str, expected: set[str]
) -> None:
    document = workload("Deployment", hardened_pod_spec())
    key = "container.apparmor.security.beta.kubernetes.io/app"
    document["spec"]["template"]["metadata"]["annotations"] = {key: annotation}
    findings = findings_of(document)
    assert {finding.rule_id for finding in findings} == expected
    if expected:
        assert findings[0].path == f'spec.template.metadata.annotations["{key}"]'


def test_when_the_legacy_seccomp_annotation_is_unconfined_then_it_fires() -> None:
    document = workload("Pod", hardened_pod_spec())
    document["metadata"]["annotations"] = {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}
    assert {finding.rule_id for finding in findings_of(document)} == {"seccomp-unconfined"}


def test_when_a_container_sets_run_as_non_root_then_the_pod_need_not() -> None:
    pod = changed(hardened_pod_spec(), "securityContext.runAsNonRoot", DELETE)
    assert rule_ids(changed(pod, f"{SC}.runAsNonRoot", True)) == set()


def test_when_every_container_sets_seccomp_then_the_pod_need_not() -> None:
    pod = changed(hardened_pod_spec(), "securityContext.seccompProfile", DELETE)
    assert rule_ids(changed(pod, f"{SC}.seccompProfile", {"type": "RuntimeDefault"})) == set()


@pytest.mark.parametrize("container_list", ["initContainers", "ephemeralContainers"])
def test_when_other_container_lists_break_a_rule_then_they_are_checked_too(container_list: str) -> None:
    pod = hardened_pod_spec()
    extra = changed(pod["containers"][0], "securityContext.privileged", True)
    if container_list == "ephemeralContainers":
        del extra["resources"]  # ephemeral containers take no resources; limits are not asked of them
    pod[container_list] = [extra | {"name": "extra"}]
    [finding] = findings_of(workload("Pod", pod))
    assert finding.path == f"spec.{container_list}[0].securityContext.privileged"
    assert "'extra'" in finding.message


def test_when_the_profile_is_baseline_then_restricted_rules_stay_quiet() -> None:
    bare = {"containers": [{"name": "app", "image": "app:1", "securityContext": {"privileged": True}}]}
    assert rule_ids(bare, Profile.BASELINE) == {"privileged", "image-digest", "memory-limit", "cpu-limit"}
    assert rule_ids(bare, Profile.RESTRICTED) == {
        "privileged",
        "image-digest",
        "memory-limit",
        "cpu-limit",
        "privilege-escalation",
        "run-as-non-root",
        "seccomp-profile",
        "drop-all-capabilities",
        "read-only-root",
        "automount-token",
    }


def test_when_the_file_holds_several_documents_then_each_workload_is_checked_with_its_line() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    deployment = workload("Deployment", changed(hardened_pod_spec(), "hostNetwork", True), name="web")
    cronjob = workload("CronJob", changed(hardened_pod_spec(), f"{C0}.image", "app:latest"), name="nightly")
    text = yaml.safe_dump_all([service, deployment, cronjob])
    text = f"---\n{text}"
    findings = check_text(text, "all.yaml")[1]
    assert [(finding.resource, finding.rule_id) for finding in findings] == [
        ("Deployment/web", "host-network"),
        ("CronJob/nightly", "image-digest"),
    ]
    lines = text.splitlines()
    for finding in findings:
        assert finding.line is not None
        assert lines[finding.line - 2] == "---"  # the document starts right after its separator
    assert findings[1].path == "spec.jobTemplate.spec.template.spec.containers[0].image"


def test_when_a_list_holds_workloads_then_its_items_are_checked() -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": [workload("Pod", {"containers": [{"name": "a"}]})]}
    assert "image-digest" in {finding.rule_id for finding in findings_of(document)}
