"""``docker run`` / ``podman run`` command lines: the brief's command, a dangerous one, every flag, and the parser."""

from __future__ import annotations

import pytest

from tests.policy.samples import HARDENED_RUN, IMAGE
from warden.errors import InvalidArgument
from warden.policy import Profile, check_docker_run
from warden.policy.dockerrun import parse

BRIEF = (
    "docker run -d --gpus device=0 --security-opt no-new-privileges --cap-drop=ALL --read-only "
    "-v /tmp/data_input:/input:ro -v /tmp/output:/output -e ALLOW_ANONYMOUS_LOGIN=false "
    "--name gdpr_compliant_training pytorch_cuda:v2.9"
)


def rule_ids(command: str, profile: Profile = Profile.RESTRICTED) -> set[str]:
    return {finding.rule_id for finding in check_docker_run(command, profile)}


def test_when_the_briefs_command_is_checked_then_it_gets_exactly_the_findings_it_deserves() -> None:
    findings = check_docker_run(BRIEF, Profile.RESTRICTED)
    assert sorted(finding.rule_id for finding in findings) == [
        "image-digest",
        "memory-limit",
        "pids-limit",
        "run-as-non-root",
    ]
    by_rule = {finding.rule_id: finding for finding in findings}
    assert by_rule["image-digest"].path == "pytorch_cuda:v2.9"
    assert "v2.9" in by_rule["image-digest"].message
    assert by_rule["memory-limit"].fix == "add --memory 2g"
    assert all(finding.resource == "docker run" and finding.severity.value == "error" for finding in findings)


def test_when_the_briefs_command_is_checked_at_baseline_then_only_the_user_finding_goes() -> None:
    assert rule_ids(BRIEF, Profile.BASELINE) == {"image-digest", "memory-limit", "pids-limit"}


def test_when_a_command_is_privileged_on_the_host_network_with_the_host_root_then_each_is_an_error() -> None:
    findings = check_docker_run("docker run --privileged --network host -v /:/host IMAGE", Profile.RESTRICTED)
    errors = {finding.rule_id: finding.path for finding in findings if finding.severity.value == "error"}
    assert errors["privileged"] == "--privileged"
    assert errors["host-network"] == "--network host"
    assert errors["sensitive-host-mount"] == "-v /:/host"
    assert set(errors) == {
        "privileged",
        "host-network",
        "sensitive-host-mount",
        "image-digest",
        "memory-limit",
        "pids-limit",
        "run-as-non-root",
        "privilege-escalation",
        "drop-all-capabilities",
        "read-only-root",
    }


def test_when_a_command_is_hardened_then_nothing_is_found() -> None:
    assert check_docker_run(HARDENED_RUN, Profile.RESTRICTED) == []


CASES: list[tuple[str, str, set[str]]] = [
    ("privileged-equals", "--privileged=true", {"privileged"}),
    ("privileged-false", "--privileged=false", set()),
    ("net-host", "--net=host", {"host-network"}),
    ("pid-host", "--pid host", {"host-pid"}),
    ("ipc-host", "--ipc=host", {"host-ipc"}),
    ("cap-add-sys-admin", "--cap-add SYS_ADMIN", {"capabilities-baseline"}),
    ("cap-add-list", "--cap-add=CAP_NET_RAW,CHOWN", {"capabilities-baseline", "capabilities-restricted"}),
    ("cap-add-net-bind", "--cap-add NET_BIND_SERVICE", set()),
    ("seccomp-unconfined", "--security-opt seccomp=unconfined", {"seccomp-unconfined"}),
    ("seccomp-profile-file", "--security-opt seccomp=/etc/docker/seccomp.json", set()),
    ("apparmor-unconfined", "--security-opt apparmor=unconfined", {"apparmor"}),
    ("label-disable", "--security-opt label=disable", {"selinux"}),
    ("systempaths", "--security-opt systempaths=unconfined", {"proc-mount"}),
    ("sysctl-unsafe", "--sysctl kernel.msgmax=65536", {"sysctls"}),
    ("sysctl-safe", "--sysctl net.ipv4.ip_unprivileged_port_start=0", set()),
    ("mount-root-long", "--volume=/:/host:ro", {"sensitive-host-mount"}),
    ("mount-etc", "-v /etc:/etc", {"sensitive-host-mount"}),
    ("mount-bind", "--mount type=bind,source=/sys,target=/sys", {"sensitive-host-mount"}),
    ("mount-volume", "--mount type=volume,source=data,target=/data", set()),
    ("docker-socket", "-v /var/run/docker.sock:/var/run/docker.sock", {"docker-socket"}),
    ("podman-socket", "-v /run/podman/podman.sock:/run/podman/podman.sock", {"docker-socket"}),
    ("api-socket", "--use-api-socket", {"docker-socket"}),
    ("user-root", "--user root", {"run-as-user-root"}),
    ("user-zero", "-u 0:0", {"run-as-user-root"}),
    ("memory-attached", "-m0", {"memory-limit"}),
    ("pids-unlimited", "--pids-limit=-1", {"pids-limit"}),
]


@pytest.mark.parametrize(("flag", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_when_one_flag_is_added_then_exactly_its_rule_fires(flag: str, expected: set[str]) -> None:
    base = HARDENED_RUN.split(IMAGE)[0]
    assert rule_ids(f"{base}{flag} {IMAGE} python train.py") == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("--read-only", {"read-only-root"}),
        ("--cap-drop ALL", {"drop-all-capabilities"}),
        ("--security-opt no-new-privileges", {"privilege-escalation"}),
        ("--user 10001:10001", {"run-as-non-root"}),
        ("--memory 2g", {"memory-limit"}),
        ("--pids-limit 256", {"pids-limit"}),
    ],
)
def test_when_one_hardening_flag_is_missing_then_exactly_its_rule_fires(flags: str, expected: set[str]) -> None:
    assert rule_ids(HARDENED_RUN.replace(f"{flags} ", "")) == expected


@pytest.mark.parametrize(
    "command",
    [
        "sudo docker run --privileged app",
        "sudo -E DOCKER_HOST=unix:///run/user/1000/docker.sock docker run --privileged app",
        "podman run --privileged app",
        "docker container run --privileged app",
        "/usr/bin/docker run -it --privileged app bash -c 'echo --network host'",
        "docker run -dit --privileged --name x app",
    ],
)
def test_when_the_command_is_spelled_differently_then_it_is_still_read(command: str) -> None:
    ids = rule_ids(command)
    assert "privileged" in ids
    assert "host-network" not in ids  # words after the image are the container's own command


def test_when_options_are_parsed_then_the_image_follows_them() -> None:
    run = parse("podman run --rm -e A=1 -p 8080:80 --name web -m512m quay.io/org/web:1 --flag")
    assert (run.engine, run.image) == ("podman", "quay.io/org/web:1")
    assert ("--memory", "512m", "-m512m") in run.options


@pytest.mark.parametrize(
    "command",
    ["", "kubectl run x --image=app", "docker build .", "docker run --rm", "docker run --name", "docker run 'unclosed"],
)
def test_when_the_command_is_not_a_run_command_then_it_is_refused(command: str) -> None:
    with pytest.raises(InvalidArgument):
        check_docker_run(command, Profile.RESTRICTED)
