"""The objects of a tenant with dedicated isolation: its own namespace, with a quota, limits and a network policy,
and a Warden Deployment that serves that tenant only (``WARDEN_SERVE_TENANTS``).

The quota holds what the tenant's Deployment needs through a rolling update, unless ``--tenant-quota`` says
otherwise: ``tenant_replicas`` pods plus the surge pod (none with GPUs), each with the replica's CPU and memory as
requests and limits, its GPUs or MIG slices as ``requests.nvidia.com/…``, and the one model-store claim. The
LimitRange gives a container that names no resources the replica's size, and caps any at it.

Namespaced objects cannot be shared, so the tenant namespace has its own ConfigMap, model-store claim and service
account, and needs its own copy of the Secret the operator creates. Replicas of every namespace share the database,
and the model store: the tenant's claim is bound to a PersistentVolume of its own on the ``--model-store-nfs``
export the shared claim is bound to, so that a model pushed through any replica is served by the tenant's. A
tenant with GPUs runs ``--gpu-image`` (onnxruntime-gpu) on ``WARDEN_DEVICE=cuda``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from warden.deploy.kubernetes import (
    NAME,
    config_map,
    deployment,
    labels,
    model_store_claim,
    model_store_volume,
    namespace,
    network_policy,
    service,
    service_account,
)
from warden.deploy.options import KubernetesOptions, Tenant

__all__ = ["limit_range", "resource_quota", "tenant_objects"]


def _times(count: int, quantity: str) -> str:
    """``count`` times a quantity, written in the quantity's own suffix (``3`` × ``4Gi`` is ``12Gi``)."""
    number = quantity.rstrip("mkMGTPEi")
    suffix = quantity[len(number) :]
    total = Decimal(number) * count
    return f"{total.normalize():f}{suffix}"


def resource_quota(options: KubernetesOptions, tenant: Tenant) -> dict[str, Any]:
    """The tenant namespace's ResourceQuota: computed from its Deployment, overridden by ``--tenant-quota``."""
    pods = options.tenant_replicas + tenant.surge
    cpu = tenant.quota.cpu or _times(pods, options.cpu)
    memory = tenant.quota.memory or _times(pods, options.memory)
    hard = {
        "pods": str(tenant.quota.pods or pods),
        "requests.cpu": cpu,
        "limits.cpu": cpu,
        "requests.memory": memory,
        "limits.memory": memory,
        "persistentvolumeclaims": "1",
        "requests.storage": tenant.quota.storage or options.model_store_size,
    }
    if tenant.gpu is not None:
        hard[f"requests.{tenant.gpu.resource}"] = str(pods * tenant.gpu.count)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": NAME, "namespace": tenant.namespace, "labels": labels(tenant.namespace, tenant)},
        "spec": {"hard": hard},
    }


def limit_range(options: KubernetesOptions, tenant: Tenant) -> dict[str, Any]:
    """Defaults for containers that name no resources, and the most any one container may ask for."""
    size = {"cpu": options.cpu, "memory": options.memory}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": NAME, "namespace": tenant.namespace, "labels": labels(tenant.namespace, tenant)},
        "spec": {"limits": [{"type": "Container", "default": size, "defaultRequest": dict(size), "max": dict(size)}]},
    }


def tenant_objects(options: KubernetesOptions, tenant: Tenant) -> list[dict[str, Any]]:
    """Every object of one dedicated tenant, namespace first, in the order ``kubectl apply`` needs them."""
    ns = tenant.namespace
    volume = model_store_volume(options, ns, ns, tenant)
    return [
        namespace(ns, ns, tenant),
        resource_quota(options, tenant),
        limit_range(options, tenant),
        network_policy(options, ns, ns, {}, tenant),
        service_account(ns, ns, tenant),
        config_map(options, ns, ns, tenant),
        *([] if volume is None else [volume]),
        model_store_claim(options, ns, ns, tenant),
        deployment(options, ns, ns, options.tenant_replicas, tenant),
        service(ns, ns, tenant),
    ]
