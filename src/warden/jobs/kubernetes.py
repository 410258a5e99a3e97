"""The ``kubernetes`` job backend: the job as a ``batch/v1`` Job manifest that passes Pod Security "restricted".

:func:`build_manifest` turns a :class:`KubernetesJob` into a Job that runs once (``restartPolicy: Never``,
``backoffLimit: 0``), is stopped at the timeout (``activeDeadlineSeconds``) and removed a while after it ends
(``ttlSecondsAfterFinished``). Its pod mounts no service-account token, runs as an unprivileged uid and gid with
the runtime's default seccomp profile, and its one container has every capability dropped, no privilege
escalation, a read-only root filesystem and requests equal to its limits (memory, cpu, ephemeral storage).

Host paths are forbidden by the restricted profile, so data reaches the pod through PersistentVolumeClaims: each
approved input ``NAME`` is the claim given for it (by default a claim called ``NAME``), mounted read-only at
``/input/NAME``; the output is a claim mounted at ``/output``; ``/tmp`` is a size-limited ``emptyDir``. Warden
hashes the inputs it admits on this machine; it cannot see into a claim, so the manifest carries the approval id,
the purpose and the inputs' sha256 as annotations, for the cluster side to check and to audit, and the approval as
a label for selection (``kubectl get jobs -l warden.io/approval=…``): the id itself, or, for an id a label value
cannot hold (one ending in ``-`` or ``_``), ``sha256-`` and the first 32 hex digits of its sha256
(:func:`approval_label`).

Logs and outputs: the container's ``ephemeral-storage`` request and limit are ``/tmp``'s size plus ``log_bytes``,
and the kubelet counts the container's logs against it, so a job flooding its logs is evicted (the kubelet's own
``containerLogMaxSize`` rotates them before that). The output claim's capacity bounds the output; Warden cannot
size a claim it does not create, so it records the limit as the ``warden.io/max-output-bytes`` annotation for
the cluster side, and the job's own variables are in the pod spec (``env``), readable by whoever may read Jobs in
its namespace (a Secret referenced by ``secretKeyRef`` keeps them out of the Job; Warden does not create one).

GPUs are the device plugin's (NVIDIA's k8s-device-plugin or the GPU operator): a job with ``gpus`` N asks
``resources.limits["nvidia.com/gpu"]: N`` (the request defaults to the limit, as Kubernetes requires of extended
resources), or a MIG resource such as ``nvidia.com/mig-1g.5gb`` (the plugin's ``mixed`` MIG strategy) where
``gpu_resource`` names one; the scheduler places the pod on a node with free devices and the plugin gives the
container those and no other. Shared resources (time-slicing's ``nvidia.com/gpu.shared``) are refused: a job's
devices are its own. The container gets no host device and no privilege for it; the pod keeps the "restricted"
shape. A job without GPUs sets ``NVIDIA_VISIBLE_DEVICES=void``: CUDA images set it to ``all``, and on a node whose
default runtime is NVIDIA's that would hand the pod every GPU of the node outside the plugin's accounting.

What Kubernetes cannot say in a pod, and the bwrap and container backends enforce: a pids limit (the kubelet's
``podPidsLimit`` sets it node-wide), a CPU-seconds limit, and Warden's own seccomp denylist (the pod uses
``RuntimeDefault``; a ``Localhost`` profile would need the file on every node). No network is the namespace's
NetworkPolicy's job: apply a deny-all policy to the namespace the Job runs in.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from warden.errors import InvalidArgument
from warden.jobs.gpus import check_gpu_env
from warden.jobs.images import ImageRef
from warden.jobs.sandbox import DEFAULT_ENV
from warden.policy.kubernetes import restricted_container_security

__all__ = [
    "APPROVAL_ANNOTATION",
    "APPROVAL_LABEL",
    "GPU_RESOURCE",
    "INPUTS_ANNOTATION",
    "MAX_OUTPUT_ANNOTATION",
    "PURPOSE_ANNOTATION",
    "KubernetesInput",
    "KubernetesJob",
    "approval_label",
    "build_manifest",
    "gpu_limits",
    "manifest_yaml",
]

APPROVAL_LABEL: Final = "warden.io/approval"
APPROVAL_ANNOTATION: Final = "warden.io/approval"
PURPOSE_ANNOTATION: Final = "warden.io/purpose"
INPUTS_ANNOTATION: Final = "warden.io/inputs"
MAX_OUTPUT_ANNOTATION: Final = "warden.io/max-output-bytes"
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
GPU_RESOURCE: Final = "nvidia.com/gpu"
_GPU_RESOURCE: Final = re.compile(r"nvidia\.com/(?:gpu|mig-[1-9][0-9]?g\.[1-9][0-9]{0,3}gb(?:\+me)?)")
_LABEL_VALUE: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")


@dataclass(frozen=True)
class KubernetesInput:
    """One approved input: its name (mount point ``/input/NAME``), its sha256, and the claim that holds it."""

    name: str
    sha256: str
    claim: str


@dataclass(frozen=True)
class KubernetesJob:
    """One job for Kubernetes. ``name`` is the Job's name; ``cpus`` its CPU request and limit."""

    name: str
    image: ImageRef
    command: Sequence[str]
    approval_id: str
    purpose: str
    output_claim: str
    inputs: Sequence[KubernetesInput] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    memory_bytes: int = 2 * 1024**3
    cpus: float = 1.0
    tmp_bytes: int = 256 * 1024**2
    log_bytes: int = 64 * 1024**2
    max_output_bytes: int = 1024**3
    timeout_seconds: float = 3600.0
    ttl_seconds: int = 86400
    uid: int = 65534
    gid: int = 65534
    gpus: int = 0
    gpu_resource: str = GPU_RESOURCE
    """The device plugin's resource a GPU job asks for: ``nvidia.com/gpu``, or a MIG one (``nvidia.com/mig-1g.5gb``)."""

    def __post_init__(self) -> None:
        if not _DNS_LABEL.fullmatch(self.name) or len(self.name) > 52:  # room for the pod name suffix
            raise InvalidArgument(f"job name {self.name!r} must be a DNS label of at most 52 characters")
        if self.namespace is not None and not _DNS_LABEL.fullmatch(self.namespace):
            raise InvalidArgument(f"namespace {self.namespace!r} is not a DNS label")
        for claim in (self.output_claim, *(i.claim for i in self.inputs)):
            if not _DNS_SUBDOMAIN.fullmatch(claim):
                raise InvalidArgument(f"claim name {claim!r} is not a valid PersistentVolumeClaim name")
        if not self.approval_id:
            raise InvalidArgument("the job needs an approval id")
        if not self.command:
            raise InvalidArgument("the job needs a command")
        if self.uid <= 0 or self.gid <= 0:
            raise InvalidArgument("the job must run as an unprivileged uid and gid, not 0")
        if self.gpus < 0:
            raise InvalidArgument("a job asks for 0 or more GPUs")
        if not _GPU_RESOURCE.fullmatch(self.gpu_resource):
            raise InvalidArgument(
                f"GPU resource {self.gpu_resource!r} is not nvidia.com/gpu or a MIG resource such as "
                "nvidia.com/mig-1g.5gb (shared, time-sliced GPUs are not a job's own)"
            )
        check_gpu_env(self.env)
        sizes = (self.memory_bytes, self.cpus, self.tmp_bytes, self.log_bytes, self.max_output_bytes)
        if min(*sizes, self.timeout_seconds, self.ttl_seconds) <= 0:
            raise InvalidArgument("memory, cpus, /tmp, log and output sizes, timeout and ttl must be positive")


def approval_label(approval_id: str) -> str:
    """The label value naming an approval: its id when a label value can hold it, else ``sha256-`` and a hash."""
    if _LABEL_VALUE.fullmatch(approval_id):  # at most 63 characters, alphanumeric at both ends
        return approval_id
    return "sha256-" + hashlib.sha256(approval_id.encode()).hexdigest()[:32]


def gpu_limits(gpus: int, resource: str = GPU_RESOURCE) -> dict[str, int]:
    """The container's GPU limit: ``{"nvidia.com/gpu": N}`` (or the MIG resource), nothing for a job without GPUs."""
    return {resource: gpus} if gpus else {}


def build_manifest(job: KubernetesJob) -> dict[str, Any]:
    """The Job manifest for ``job``, as a mapping ready for YAML or JSON."""
    resources = {
        "memory": str(job.memory_bytes),
        "cpu": f"{round(job.cpus * 1000)}m",
        "ephemeral-storage": str(job.tmp_bytes + job.log_bytes),
    }
    mounts: list[dict[str, Any]] = [
        {"name": f"input-{index}", "mountPath": f"/input/{item.name}", "readOnly": True}
        for index, item in enumerate(job.inputs)
    ]
    mounts += [{"name": "output", "mountPath": "/output"}, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    volumes: list[dict[str, Any]] = [
        {"name": f"input-{index}", "persistentVolumeClaim": {"claimName": item.claim, "readOnly": True}}
        for index, item in enumerate(job.inputs)
    ]
    volumes += [
        {"name": "output", "persistentVolumeClaim": {"claimName": job.output_claim}},
        {"name": "tmp", "emptyDir": {"sizeLimit": str(job.tmp_bytes)}},
    ]
    labels = {"app.kubernetes.io/managed-by": "warden", APPROVAL_LABEL: approval_label(job.approval_id)}
    no_gpu = {} if job.gpus else {"NVIDIA_VISIBLE_DEVICES": "void"}
    annotations = {
        APPROVAL_ANNOTATION: job.approval_id,
        PURPOSE_ANNOTATION: job.purpose,
        INPUTS_ANNOTATION: json.dumps({i.name: i.sha256 for i in job.inputs}, sort_keys=True),
        MAX_OUTPUT_ANNOTATION: str(job.max_output_bytes),
    }
    container = {
        "name": "job",
        "image": job.image.pinned,
        "imagePullPolicy": "IfNotPresent",
        "command": list(job.command),
        "workingDir": "/output",
        "env": [{"name": key, "value": value} for key, value in {**DEFAULT_ENV, **no_gpu, **job.env}.items()],
        "resources": {"requests": dict(resources), "limits": {**resources, **gpu_limits(job.gpus, job.gpu_resource)}},
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": job.uid,
            "runAsGroup": job.gid,
            "fsGroup": job.gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    metadata: dict[str, Any] = {"name": job.name, "labels": labels, "annotations": annotations}
    if job.namespace is not None:
        metadata["namespace"] = job.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(job.timeout_seconds)),
            "ttlSecondsAfterFinished": job.ttl_seconds,
            "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod_spec},
        },
    }


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML, keys in the order they were built."""
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False)
