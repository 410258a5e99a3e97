"""The kubernetes backend: a Job manifest that the Kubernetes schema accepts and Pod Security "restricted" passes.

The schema check is ``kubernetes-validate`` in strict mode (no unknown fields), offline against the schemas it
bundles, for the newest Kubernetes version it knows and a few before it; the policy check is ``warden.policy``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from warden.errors import InvalidArgument
from warden.jobs.images import parse_image
from warden.jobs.kubernetes import (
    APPROVAL_ANNOTATION,
    APPROVAL_LABEL,
    INPUTS_ANNOTATION,
    MAX_OUTPUT_ANNOTATION,
    PURPOSE_ANNOTATION,
    KubernetesInput,
    KubernetesJob,
    approval_label,
    build_manifest,
    manifest_yaml,
)
from warden.policy import Profile, check_text

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate.utils",
    reason="KUBERNETES SCHEMA NOT CHECKED: kubernetes-validate is not installed (pip install kubernetes-validate)",
)

IMAGE = parse_image("registry.example/team/trainer:v2.9@sha256:" + "ab" * 32)
SHA = "c" * 64


def make_job(**changes: Any) -> KubernetesJob:
    fields: dict[str, Any] = {
        "name": "warden-job-0a1b2c",
        "image": IMAGE,
        "command": ["python", "/app/train.py"],
        "approval_id": "apr_Q2xY7zKp",
        "purpose": "fraud model: train on de-identified transactions",
        "output_claim": "fraud-output",
        "inputs": [KubernetesInput("transactions.csv", SHA, "fraud-data"), KubernetesInput("labels", SHA, "labels")],
        "env": {"EPOCHS": "3"},
        "namespace": "training",
        "memory_bytes": 4 * 1024**3,
        "cpus": 2.5,
        "timeout_seconds": 5400.5,
    }
    return KubernetesJob(**{**fields, **changes})


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def test_the_job_runs_once_is_stopped_at_the_timeout_and_cleaned_up() -> None:
    manifest = build_manifest(make_job())

    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["metadata"]["namespace"] == "training"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] == 5401
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 86400
    assert pod(manifest)["restartPolicy"] == "Never"


def test_the_pod_is_locked_down() -> None:
    spec = pod(build_manifest(make_job()))
    (container,) = spec["containers"]

    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "fsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # /tmp plus the logs, which the kubelet counts against the container's ephemeral storage
    resources = {"memory": str(4 * 1024**3), "cpu": "2500m", "ephemeral-storage": str(320 * 1024**2)}
    assert container["resources"] == {"requests": resources, "limits": resources}
    assert container["image"] == IMAGE.pinned
    assert container["command"] == ["python", "/app/train.py"]
    assert {"name": "EPOCHS", "value": "3"} in container["env"]


@pytest.mark.parametrize(
    ("changes", "limit", "void"),
    [
        ({}, {}, True),
        ({"gpus": 2}, {"nvidia.com/gpu": 2}, False),
        ({"gpus": 1, "gpu_resource": "nvidia.com/mig-1g.5gb"}, {"nvidia.com/mig-1g.5gb": 1}, False),
        ({"gpus": 1, "gpu_resource": "nvidia.com/mig-3g.40gb"}, {"nvidia.com/mig-3g.40gb": 1}, False),
    ],
)
def test_gpus_are_the_device_plugin_s_limit_and_a_job_without_them_sees_none(
    changes: dict[str, Any], limit: dict[str, int], void: bool
) -> None:
    (container,) = pod(build_manifest(make_job(**changes)))["containers"]
    resources = {"memory": str(4 * 1024**3), "cpu": "2500m", "ephemeral-storage": str(320 * 1024**2)}

    assert container["resources"] == {"requests": resources, "limits": {**resources, **limit}}
    assert ({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]) is void
    assert container["securityContext"]["privileged"] is False
    assert "volumeDevices" not in container


def test_inputs_are_read_only_claims_the_output_a_claim_and_tmp_an_empty_dir() -> None:
    spec = pod(build_manifest(make_job()))
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    assert mounts["/input/transactions.csv"]["readOnly"] is True
    assert volumes[mounts["/input/transactions.csv"]["name"]]["persistentVolumeClaim"] == {
        "claimName": "fraud-data",
        "readOnly": True,
    }
    assert volumes[mounts["/output"]["name"]]["persistentVolumeClaim"] == {"claimName": "fraud-output"}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"sizeLimit": str(256 * 1024**2)}  # noqa: S108
    assert not any("hostPath" in volume for volume in spec["volumes"])


def test_labels_carry_the_approval_and_annotations_the_purpose_and_input_hashes() -> None:
    manifest = build_manifest(make_job())
    for metadata in (manifest["metadata"], manifest["spec"]["template"]["metadata"]):
        assert metadata["labels"][APPROVAL_LABEL] == "apr_Q2xY7zKp"
        assert metadata["annotations"][APPROVAL_ANNOTATION] == "apr_Q2xY7zKp"
        assert metadata["annotations"][PURPOSE_ANNOTATION].startswith("fraud model")
        assert json.loads(metadata["annotations"][INPUTS_ANNOTATION]) == {"transactions.csv": SHA, "labels": SHA}
        assert metadata["annotations"][MAX_OUTPUT_ANNOTATION] == str(1024**3)


@pytest.mark.parametrize("approval_id", ["apr_RQegZkgzYwRjesH-", "apr_RQegZkgzYwRjesH_", "-apr", "a" * 64])
def test_an_approval_id_a_label_cannot_hold_is_labelled_by_its_hash_and_annotated_whole(approval_id: str) -> None:
    manifest = build_manifest(make_job(approval_id=approval_id))

    label = approval_label(approval_id)
    assert label.startswith("sha256-")
    assert len(label) == 39
    assert manifest["metadata"]["labels"][APPROVAL_LABEL] == label
    assert manifest["metadata"]["annotations"][APPROVAL_ANNOTATION] == approval_id
    kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


SAMPLES = {
    "full": make_job(),
    "no inputs, no namespace": make_job(inputs=[], namespace=None, env={}),
    "approval id ending in '-'": make_job(approval_id="apr_RQegZkgzYwRjesH-"),
    "small": make_job(memory_bytes=64 * 1024**2, cpus=0.25, tmp_bytes=1024**2, timeout_seconds=1),
    "two gpus": make_job(gpus=2),
    "a mig device": make_job(gpus=1, gpu_resource="nvidia.com/mig-1g.5gb"),
}


@pytest.mark.parametrize("job", SAMPLES.values(), ids=SAMPLES.keys())
@pytest.mark.parametrize("version", ["latest", "1.30.0", "1.31.0", "1.32.0", "1.33.0"])
def test_the_manifest_passes_the_kubernetes_schema_in_strict_mode(job: KubernetesJob, version: str) -> None:
    if version == "latest":
        version = kubernetes_validate.latest_version()
    manifest = yaml.safe_load(manifest_yaml(build_manifest(job)))
    kubernetes_validate.validate(manifest, version, strict=True)  # raises ValidationError on any problem


def test_the_schema_check_would_catch_a_mistake() -> None:
    manifest = build_manifest(make_job())
    pod(manifest)["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("job", SAMPLES.values(), ids=SAMPLES.keys())
@pytest.mark.parametrize("profile", list(Profile))
def test_the_manifest_passes_the_policy_check_with_no_finding(job: KubernetesJob, profile: Profile) -> None:
    kind, findings = check_text(manifest_yaml(build_manifest(job)), "job.yaml", profile)
    assert kind == "kubernetes"
    assert findings == []


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"name": "Warden_Job"}, "DNS label"),
        ({"name": "x" * 53}, "at most 52"),
        ({"namespace": "Bad NS"}, "namespace"),
        ({"output_claim": "Out_Claim"}, "claim name"),
        ({"inputs": [KubernetesInput("data", SHA, "bad/claim")]}, "claim name"),
        ({"approval_id": ""}, "needs an approval id"),
        ({"command": []}, "needs a command"),
        ({"uid": 0}, "unprivileged"),
        ({"cpus": 0.0}, "positive"),
        ({"timeout_seconds": 0.0}, "positive"),
        ({"gpus": -1}, "0 or more GPUs"),
        ({"gpus": 1, "gpu_resource": "nvidia.com/gpu.shared"}, "not nvidia.com/gpu or a MIG resource"),
        ({"gpus": 1, "gpu_resource": "amd.com/gpu"}, "not nvidia.com/gpu or a MIG resource"),
        ({"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}, "NVIDIA_VISIBLE_DEVICES may not be set"),
    ],
)
def test_a_job_kubernetes_would_reject_is_refused_here(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        make_job(**changes)
