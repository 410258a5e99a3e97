"""docker-compose services: every engine rule, one field at a time, and several services in one file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.policy.samples import DELETE, changed, hardened_service
from warden.policy import Profile, check_text
from warden.policy.check import InputKind


def findings_of(services: dict[str, Any], profile: Profile = Profile.RESTRICTED) -> list[Any]:
    kind, findings = check_text(yaml.safe_dump({"services": services}, sort_keys=False), "compose.yaml", profile)
    assert kind is InputKind.COMPOSE
    return findings


def rule_ids(service: dict[str, Any], profile: Profile = Profile.RESTRICTED) -> set[str]:
    return {finding.rule_id for finding in findings_of({"api": service}, profile)}


def test_when_a_service_is_hardened_then_nothing_is_found() -> None:
    assert findings_of({"api": hardened_service()}) == []


CASES: list[tuple[str, str, object, set[str]]] = [
    ("privileged", "privileged", True, {"privileged"}),
    ("network-host", "network_mode", "host", {"host-network"}),
    ("network-none", "network_mode", "none", set()),
    ("pid-host", "pid", "host", {"host-pid"}),
    ("ipc-host", "ipc", "host", {"host-ipc"}),
    ("cap-sys-admin", "cap_add", ["SYS_ADMIN"], {"capabilities-baseline"}),
    ("cap-chown", "cap_add", ["CHOWN"], {"capabilities-restricted"}),
    ("cap-net-bind", "cap_add", ["NET_BIND_SERVICE"], set()),
    ("cap-drop-missing", "cap_drop", DELETE, {"drop-all-capabilities"}),
    ("seccomp-unconfined", "security_opt", ["no-new-privileges:true", "seccomp:unconfined"], {"seccomp-unconfined"}),
    ("apparmor-unconfined", "security_opt", ["no-new-privileges:true", "apparmor=unconfined"], {"apparmor"}),
    ("label-disable", "security_opt", ["no-new-privileges:true", "label:disable"], {"selinux"}),
    ("label-spc", "security_opt", ["no-new-privileges:true", "label=type:spc_t"], {"selinux"}),
    ("systempaths", "security_opt", ["no-new-privileges:true", "systempaths=unconfined"], {"proc-mount"}),
    ("no-new-privileges-missing", "security_opt", DELETE, {"privilege-escalation"}),
    ("no-new-privileges-false", "security_opt", ["no-new-privileges:false"], {"privilege-escalation"}),
    ("sysctls-list", "sysctls", ["kernel.msgmax=65536"], {"sysctls"}),
    ("sysctls-map", "sysctls", {"net.core.somaxconn": 1024}, {"sysctls"}),
    ("sysctls-safe", "sysctls", {"net.ipv4.tcp_syncookies": 1}, set()),
    ("mount-root", "volumes", ["/:/host"], {"sensitive-host-mount"}),
    ("mount-etc", "volumes", ["/etc/ssl:/etc/ssl:ro"], {"sensitive-host-mount"}),
    ("mount-long-syntax", "volumes", [{"type": "bind", "source": "/proc", "target": "/p"}], {"sensitive-host-mount"}),
    ("mount-socket", "volumes", ["/var/run/docker.sock:/var/run/docker.sock"], {"docker-socket"}),
    ("api-socket", "use_api_socket", True, {"docker-socket"}),
    ("mount-data", "volumes", ["./data:/data:ro", "/srv/models:/models:ro", "cache:/cache"], set()),
    ("read-only-false", "read_only", False, {"read-only-root"}),
    ("user-missing", "user", DELETE, {"run-as-non-root"}),
    ("user-root", "user", "root", {"run-as-user-root"}),
    ("user-zero", "user", "0:0", {"run-as-user-root"}),
    ("memory-missing", "mem_limit", DELETE, {"memory-limit"}),
    ("pids-missing", "pids_limit", DELETE, {"pids-limit"}),
    ("pids-unlimited", "pids_limit", -1, {"pids-limit"}),
    ("image-tag", "image", "postgres:16", {"image-digest"}),
    ("image-latest", "image", "postgres:latest", {"image-digest"}),
]


@pytest.mark.parametrize(("key", "value", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_when_one_key_is_changed_then_exactly_its_rule_fires(key: str, value: object, expected: set[str]) -> None:
    assert rule_ids(changed(hardened_service(), key, value)) == expected


def test_when_limits_are_given_under_deploy_then_they_count() -> None:
    service = changed(changed(hardened_service(), "mem_limit", DELETE), "pids_limit", DELETE)
    service["deploy"] = {"resources": {"limits": {"memory": "1g", "pids": 128, "cpus": "1.0"}}}
    assert rule_ids(service) == set()


def test_when_a_service_only_builds_then_its_image_is_the_dockerfiles_concern() -> None:
    service = changed(hardened_service(), "image", DELETE)
    service["build"] = {"context": "."}
    assert rule_ids(service) == set()


def test_when_a_finding_is_made_then_it_names_the_service_and_its_key() -> None:
    [finding] = findings_of({"api": changed(hardened_service(), "volumes", ["/srv/in:/in", "/:/host"])})
    assert (finding.resource, finding.path) == ("service api", "services.api.volumes[1]")
    assert "root filesystem" in finding.message
    [finding] = findings_of({"api": changed(hardened_service(), "mem_limit", DELETE)})
    assert finding.fix == "add mem_limit: 2g"


def test_when_the_file_has_several_services_then_each_is_checked() -> None:
    services = {
        "web": hardened_service(),
        "worker": changed(hardened_service(), "privileged", True),
        "db": changed(hardened_service(), "network_mode", "host"),
    }
    findings = findings_of(services)
    assert [(finding.resource, finding.rule_id) for finding in findings] == [
        ("service worker", "privileged"),
        ("service db", "host-network"),
    ]


def test_when_the_profile_is_baseline_then_restricted_rules_stay_quiet() -> None:
    service = {"image": "app:1", "cap_add": ["CHOWN", "SYS_ADMIN"]}
    assert rule_ids(service, Profile.BASELINE) == {
        "capabilities-baseline",
        "image-digest",
        "memory-limit",
        "pids-limit",
    }
