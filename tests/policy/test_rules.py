"""The rule catalogue and the facts the rules share."""

from __future__ import annotations

import pytest

from warden.policy import RULES, RULES_BY_KIND, InputKind, Profile, Severity
from warden.policy.rules import image_problem, is_root_user, runtime_socket, security_option, sensitive_host_path

PSS_BASELINE = {
    "host-process",
    "host-network",
    "host-pid",
    "host-ipc",
    "privileged",
    "capabilities-baseline",
    "host-path-volume",
    "host-ports",
    "apparmor",
    "selinux",
    "proc-mount",
    "seccomp-unconfined",
    "sysctls",
}
PSS_RESTRICTED = {
    "volume-types",
    "privilege-escalation",
    "run-as-non-root",
    "run-as-user-root",
    "seccomp-profile",
    "drop-all-capabilities",
    "capabilities-restricted",
}


def test_when_the_catalogue_is_read_then_pod_security_is_covered_in_full_at_the_right_levels() -> None:
    by_source = {
        source: {r.id for r in RULES.values() if r.source == source} for source in ("pss-baseline", "pss-restricted")
    }
    assert by_source == {"pss-baseline": PSS_BASELINE, "pss-restricted": PSS_RESTRICTED}
    assert all(RULES[rule].level is Profile.BASELINE for rule in PSS_BASELINE)
    assert all(RULES[rule].level is Profile.RESTRICTED for rule in PSS_RESTRICTED)
    assert all(RULES[rule].severity is Severity.ERROR for rule in PSS_BASELINE | PSS_RESTRICTED)


def test_when_kubernetes_is_checked_then_every_pod_security_rule_applies() -> None:
    assert RULES_BY_KIND[InputKind.KUBERNETES] >= PSS_BASELINE | PSS_RESTRICTED


def test_when_every_input_kind_is_counted_then_every_rule_is_checked_somewhere() -> None:
    assert set().union(*RULES_BY_KIND.values()) == set(RULES)


def test_when_rules_are_listed_then_each_has_a_stable_slug_a_title_and_a_fix() -> None:
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id
        assert rule_id == rule_id.lower()
        assert " " not in rule_id
        assert rule.title
        assert rule.fix
        assert "\n" not in rule.fix


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("app@sha256:" + "a" * 64, None),
        ("registry:5000/org/app:1.0@sha256:" + "a" * 64, None),
        ("app@sha256:short", "malformed digest"),
        ("app", "has no tag"),
        ("registry:5000/org/app", "has no tag"),
        ("app:latest", "'latest'"),
        ("registry:5000/app:v2.9", "tag 'v2.9'"),
    ],
)
def test_when_an_image_is_named_then_only_a_digest_pins_it(image: str, problem: str | None) -> None:
    found = image_problem(image)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("path", "sensitive"),
    [
        ("/", True),
        ("//", True),
        ("/etc", True),
        ("/etc/ssl/certs", True),
        ("/proc/1/ns", True),
        ("/var/lib/docker/volumes", True),
        ("/root/.ssh", True),
        ("/tmp/data_input", False),  # noqa: S108 - the brief mounts it
        ("/srv/data", False),
        ("/etcetera", False),
        ("./data", False),
        ("named-volume", False),
    ],
)
def test_when_a_host_path_is_mounted_then_only_system_paths_are_sensitive(path: str, sensitive: bool) -> None:
    assert sensitive_host_path(path) is sensitive


def test_when_small_facts_are_asked_then_they_are_right() -> None:
    assert runtime_socket("/var/run/docker.sock")
    assert runtime_socket("/run/containerd/containerd.sock")
    assert not runtime_socket("/srv/app.sock")
    assert is_root_user("root")
    assert is_root_user("0:1000")
    assert not is_root_user("10001")
    assert security_option("seccomp=unconfined") == ("seccomp", "unconfined")
    assert security_option("label:type:spc_t") == ("label", "type:spc_t")
    assert security_option("no-new-privileges") == ("no-new-privileges", "true")
