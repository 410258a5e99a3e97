"""Deployment files for Warden past one machine: plain Kubernetes YAML rendered from validated options.

- :mod:`warden.deploy.options`: :class:`KubernetesOptions` and the tenants, GPUs, quotas and egress targets it
  holds, each validated when built, plus the parsers of their command-line forms.
- :mod:`warden.deploy.kubernetes`: the shared objects (namespace, Deployment, Service, NetworkPolicy, …).
- :mod:`warden.deploy.autoscaling`: the HorizontalPodAutoscaler or the KEDA ScaledObject on queue depth.
- :mod:`warden.deploy.tenants`: a dedicated tenant's namespace, quota, limits, policy and Deployment.
- :mod:`warden.deploy.render`: the files, in apply order, and writing them.

Pure functions over frozen options: nothing here reads the environment, the database or a secret.
"""

from __future__ import annotations

from warden.deploy.kubernetes import OPTIONAL_SECRET_KEYS, SECRET_KEYS
from warden.deploy.options import (
    Autoscaler,
    EgressTarget,
    GpuRequest,
    KubernetesOptions,
    NfsExport,
    Quota,
    Tenant,
    parse_egress,
    parse_gpu,
    parse_nfs,
    parse_quota,
    tenants_from_options,
)
from warden.deploy.render import ManifestFile, render, write

__all__ = [
    "OPTIONAL_SECRET_KEYS",
    "SECRET_KEYS",
    "Autoscaler",
    "EgressTarget",
    "GpuRequest",
    "KubernetesOptions",
    "ManifestFile",
    "NfsExport",
    "Quota",
    "Tenant",
    "parse_egress",
    "parse_gpu",
    "parse_nfs",
    "parse_quota",
    "render",
    "tenants_from_options",
    "write",
]
