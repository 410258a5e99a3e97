"""Hardened inputs that pass every rule, and a helper to break them one field at a time."""

from __future__ import annotations

import copy
from typing import Any

DIGEST = "sha256:" + "a" * 64
IMAGE = f"registry.example/app@{DIGEST}"
DELETE = object()
"""A value for :func:`changed` that removes the field."""


def hardened_pod_spec() -> dict[str, Any]:
    """A pod spec that passes Pod Security restricted and every Warden rule."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "app",
                "image": IMAGE,
                "ports": [{"containerPort": 8080}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/scratch"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def workload(kind: str, pod_spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    """A manifest of ``kind`` around ``pod_spec``."""
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
    specs: dict[str, Any] = {
        "Pod": pod_spec,
        "Deployment": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template},
        "StatefulSet": {"serviceName": name, "selector": {"matchLabels": {"app": name}}, "template": template},
        "DaemonSet": {"selector": {"matchLabels": {"app": name}}, "template": template},
        "ReplicaSet": {"selector": {"matchLabels": {"app": name}}, "template": template},
        "Job": {"template": template},
        "CronJob": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
    }
    api = {"Pod": "v1", "Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": specs[kind]}


def hardened_service() -> dict[str, Any]:
    """A compose service that passes every rule."""
    return {
        "image": IMAGE,
        "user": "10001:10001",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": "512m",
        "pids_limit": 256,
    }


HARDENED_DOCKERFILE = f"""\
# syntax=docker/dockerfile:1
ARG BASE=python@{DIGEST}
FROM ${{BASE}} AS build
RUN pip install --prefix=/install app
FROM gcr.io/distroless/python3@{DIGEST}
COPY --from=build /install /usr/local
USER 10001:10001
ENTRYPOINT ["python", "-m", "app"]
"""

HARDENED_RUN = (
    f"docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges --user 10001:10001 "
    f"--memory 2g --pids-limit 256 --network none -v /srv/data:/input:ro {IMAGE} python train.py"
)


def changed(document: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of ``document`` with the field at dotted ``path`` (``containers.0.image``) set or deleted."""
    result = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return result
