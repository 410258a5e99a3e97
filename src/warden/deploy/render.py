"""Lay the objects out as files: plain YAML that ``kubectl apply -f DIR`` takes as it is, in a working order.

::

    00-namespace.yaml                 the shared namespace (Pod Security "restricted")
    01-serviceaccount.yaml            Warden's service account, no token
    02-configmap.yaml                 the non-secret settings
    03-model-store.yaml               the ReadWriteMany model-store claim (and its NFS volume, with --model-store-nfs)
    10-deployment.yaml                the hardened Deployment, its replicas left to the autoscaler
    11-service.yaml
    12-poddisruptionbudget.yaml
    13-networkpolicy.yaml
    20-horizontalpodautoscaler.yaml   scale on queue depth (Prometheus adapter); with --autoscaler keda instead:
    20-scaledobject.yaml              the KEDA ScaledObject
    30-tenant-NAME.yaml               one per dedicated tenant: its namespace and everything in it, and its NFS volume

``kubectl apply -f DIR`` reads the files in name order. No file holds a secret: the Secret the Deployments
reference is created by the operator (its keys are :data:`~warden.deploy.kubernetes.SECRET_KEYS`, and optionally
:data:`~warden.deploy.kubernetes.OPTIONAL_SECRET_KEYS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from warden import __version__
from warden.deploy.autoscaling import autoscaler
from warden.deploy.kubernetes import (
    config_map,
    deployment,
    model_store_claim,
    model_store_volume,
    namespace,
    network_policy,
    pod_disruption_budget,
    selector,
    service,
    service_account,
)
from warden.deploy.options import KubernetesOptions
from warden.deploy.tenants import tenant_objects
from warden.errors import Conflict

__all__ = ["ManifestFile", "render", "write"]


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a mapping used twice is written twice, never as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_HEADER: Final = "# Rendered by `warden deploy k8s` (Warden {version}); plain YAML for `kubectl apply -f`.\n"


@dataclass(frozen=True)
class ManifestFile:
    """One file of the output: its path relative to the output directory and the objects it holds, in order."""

    path: str
    objects: tuple[dict[str, Any], ...]

    @property
    def resources(self) -> list[str]:
        """``Kind/namespace/name`` of each object (``Kind/name`` for cluster-scoped ones)."""
        names = []
        for item in self.objects:
            metadata = item["metadata"]
            scope = f"{metadata['namespace']}/" if "namespace" in metadata else ""
            names.append(f"{item['kind']}/{scope}{metadata['name']}")
        return names

    def text(self) -> str:
        """The file's YAML: one document per object, keys in the order they were built."""
        body = yaml.dump_all(list(self.objects), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        return _HEADER.format(version=__version__) + body


def render(options: KubernetesOptions) -> list[ManifestFile]:
    """Every file of a deployment, in apply order."""
    ns = options.namespace
    volume = model_store_volume(options, ns, ns)
    scaler = autoscaler(options)
    return [
        ManifestFile("00-namespace.yaml", (namespace(ns, ns),)),
        ManifestFile("01-serviceaccount.yaml", (service_account(ns, ns),)),
        ManifestFile("02-configmap.yaml", (config_map(options, ns, ns),)),
        ManifestFile(
            "03-model-store.yaml", (*([] if volume is None else [volume]), model_store_claim(options, ns, ns))
        ),
        ManifestFile("10-deployment.yaml", (deployment(options, ns, ns, None),)),
        ManifestFile("11-service.yaml", (service(ns, ns),)),
        ManifestFile("12-poddisruptionbudget.yaml", (pod_disruption_budget(ns, ns),)),
        ManifestFile("13-networkpolicy.yaml", (network_policy(options, ns, ns, {"matchLabels": selector(ns)}),)),
        ManifestFile(f"20-{scaler['kind'].lower()}.yaml", (scaler,)),
        *(ManifestFile(f"30-tenant-{t.name}.yaml", tuple(tenant_objects(options, t))) for t in options.tenants),
    ]


def write(files: Sequence[ManifestFile], out: Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` under ``out`` (created if missing) and return their paths.

    A directory that already holds anything is refused with :class:`~warden.errors.Conflict` unless ``force``
    is set, so that files of an earlier rendering (a tenant since removed) are never applied by mistake;
    with ``force`` the files of the same names are overwritten and the others are left as they are.
    """
    if out.exists() and not out.is_dir():
        raise Conflict(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise Conflict(f"{out} is not empty; choose an empty directory or pass --force to overwrite")
    written = []
    for file in files:
        path = out / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.text(), encoding="utf-8")
        written.append(path)
    return written
