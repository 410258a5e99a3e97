"""The Kubernetes objects of a Warden deployment, as plain mappings ready for YAML.

One pod template serves the shared Deployment and every tenant's: Pod Security "restricted" (non-root uid and gid
10001, no privilege escalation, every capability dropped, read-only root filesystem, ``RuntimeDefault`` seccomp),
no service-account token, no service links (a Service called ``warden`` would otherwise inject ``WARDEN_PORT`` and
other ``WARDEN_*`` variables, which ``warden serve`` refuses as unknown settings), requests equal to limits, probes
on ``/v2/health/live`` and ``/v2/health/ready``, ``/tmp`` and the data directory on ``emptyDir``, the model store on
a shared ``ReadWriteMany`` claim, spread over zones and away from each other on nodes. Settings come from a
ConfigMap; the server secret, the secrets it replaced (optional) and the database and Redis URLs from
``secretKeyRef``s to a Secret that is referenced, never written.

The model store is one filesystem for every namespace: with ``--model-store-nfs`` each namespace's claim is bound
(``volumeName``, no storage class) to a PersistentVolume of its own on the same NFS export; without it, the shared
namespace's claim is provisioned dynamically (no tenants are allowed then).

``/metrics`` is served without credentials (``WARDEN_METRICS_PUBLIC``) on port 8080, the API's port: the
NetworkPolicy admits the gateway and the monitoring namespaces to that port, and the gateway must not route
``/metrics``.
"""

from __future__ import annotations

from typing import Any, Final

from warden.deploy.options import EgressTarget, KubernetesOptions, Tenant
from warden.policy.kubernetes import restricted_container_security

__all__ = [
    "CONTAINER_PORT",
    "DATA_DIR",
    "GID",
    "MODELS_CLAIM",
    "MODEL_STORE",
    "NAME",
    "OPTIONAL_SECRET_KEYS",
    "SECRET_KEYS",
    "UID",
    "config_map",
    "deployment",
    "labels",
    "model_store_claim",
    "model_store_volume",
    "model_store_volume_name",
    "namespace",
    "network_policy",
    "object_metadata",
    "pod_disruption_budget",
    "selector",
    "service",
    "service_account",
]

NAME: Final = "warden"
MODELS_CLAIM: Final = "warden-models"
UID: Final = 10001
GID: Final = 10001
CONTAINER_PORT: Final = 8080
DATA_DIR: Final = "/data"
"""The image's data directory (``deploy/Dockerfile``), here an ``emptyDir``: with PostgreSQL and a shared store it
holds nothing that must outlive the pod."""
MODEL_STORE: Final = "/models"
SECRET_KEYS: Final = ("WARDEN_SECRET_KEY", "WARDEN_DATABASE_URL", "WARDEN_REDIS_URL")
"""The Secret's keys, named as the variables they become; the Secret itself is created by the operator."""
OPTIONAL_SECRET_KEYS: Final = ("WARDEN_PREVIOUS_SECRET_KEYS",)
"""Keys the Secret may hold: the secrets a rotation replaced, a JSON list (see docs/deploy.md)."""
_PSA_LEVEL: Final = "restricted"
_TMP_BYTES: Final = "256Mi"
_DATA_BYTES: Final = "1Gi"
_EPHEMERAL: Final = "2Gi"


def labels(instance: str, tenant: Tenant | None = None) -> dict[str, str]:
    """The labels of every object of one Warden instance (the shared one, or a tenant's)."""
    found = {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/part-of": NAME,
        "app.kubernetes.io/managed-by": "warden-deploy",
    }
    if tenant is not None:
        found["warden.io/tenant"] = tenant.name
    return found


def selector(instance: str) -> dict[str, str]:
    """The labels that select one instance's pods (stable across upgrades: a Deployment's selector is immutable)."""
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": instance}


def object_metadata(name: str, namespace: str, instance: str, tenant: Tenant | None = None) -> dict[str, Any]:
    """``metadata`` of a namespaced object of one instance: its name, namespace and labels."""
    return {"name": name, "namespace": namespace, "labels": labels(instance, tenant)}


def namespace(name: str, instance: str, tenant: Tenant | None = None) -> dict[str, Any]:
    """A namespace that Pod Security admission holds to "restricted" (enforce, audit and warn)."""
    psa = {f"pod-security.kubernetes.io/{mode}": _PSA_LEVEL for mode in ("enforce", "audit", "warn")}
    psa |= {f"pod-security.kubernetes.io/{mode}-version": "latest" for mode in ("enforce", "audit", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels(instance, tenant), **psa}},
    }


def service_account(namespace: str, instance: str, tenant: Tenant | None = None) -> dict[str, Any]:
    """Warden's own service account, with no token mounted (Warden never calls the Kubernetes API)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_metadata(NAME, namespace, instance, tenant),
        "automountServiceAccountToken": False,
    }


def config_map(
    options: KubernetesOptions, namespace: str, instance: str, tenant: Tenant | None = None
) -> dict[str, Any]:
    """The non-secret settings, as the ``WARDEN_*`` variables ``warden serve`` reads."""
    data = {
        "WARDEN_HOST": "0.0.0.0",  # noqa: S104 - inside the pod; the NetworkPolicy decides who reaches it
        "WARDEN_PORT": str(CONTAINER_PORT),
        "WARDEN_DATA_DIR": DATA_DIR,
        "WARDEN_MODEL_STORE": MODEL_STORE,
        "WARDEN_LOG_FORMAT": "json",
        "WARDEN_LOG_LEVEL": "info",
        "WARDEN_WORKERS": str(options.workers),
        "WARDEN_MODEL_MEMORY_BUDGET": str(options.model_memory_budget),
        "WARDEN_METRICS_PUBLIC": "true",
        "WARDEN_REDIS_PREFIX": NAME,
        "WARDEN_DEVICE": "cuda" if tenant is not None and tenant.gpu is not None else "cpu",
    }
    if tenant is not None:
        data["WARDEN_SERVE_TENANTS"] = f'["{tenant.name}"]'
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(NAME, namespace, instance, tenant),
        "data": data,
    }


def model_store_volume_name(namespace: str) -> str:
    """The PersistentVolume bound to one namespace's model-store claim (volumes are cluster-wide: one each)."""
    return f"{MODELS_CLAIM}-{namespace}"


def model_store_volume(
    options: KubernetesOptions, namespace: str, instance: str, tenant: Tenant | None = None
) -> dict[str, Any] | None:
    """The volume on ``--model-store-nfs`` reserved for one namespace's claim; ``None`` without the option.

    ``Retain``: deleting a namespace releases the volume and leaves the export's models as they are.
    """
    if options.model_store_nfs is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": model_store_volume_name(namespace), "labels": labels(instance, tenant)},
        "spec": {
            "capacity": {"storage": options.model_store_size},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": MODELS_CLAIM,
            },
            "nfs": {"server": options.model_store_nfs.server, "path": options.model_store_nfs.path},
        },
    }


def model_store_claim(
    options: KubernetesOptions, namespace: str, instance: str, tenant: Tenant | None = None
) -> dict[str, Any]:
    """The model store: one ``ReadWriteMany`` claim every replica of the namespace mounts, bound to the namespace's
    NFS volume where there is one, else provisioned (of ``--storage-class``)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": options.model_store_size}},
    }
    if options.model_store_nfs is not None:
        spec["storageClassName"] = ""
        spec["volumeName"] = model_store_volume_name(namespace)
    elif options.storage_class is not None:
        spec["storageClassName"] = options.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_metadata(MODELS_CLAIM, namespace, instance, tenant),
        "spec": spec,
    }


def _from_secret(secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """A variable from the operator's Secret; an optional one is simply unset where the Secret lacks the key."""
    reference: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        reference["optional"] = True
    return {"name": key, "valueFrom": {"secretKeyRef": reference}}


def _container(options: KubernetesOptions, tenant: Tenant | None) -> dict[str, Any]:
    resources: dict[str, str] = {"cpu": options.cpu, "memory": options.memory, "ephemeral-storage": _EPHEMERAL}
    if tenant is not None and tenant.gpu is not None:
        resources[tenant.gpu.resource] = str(tenant.gpu.count)

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    return {
        "name": NAME,
        "image": options.image_for(tenant).pinned,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": NAME}}],
        "env": [_from_secret(options.secret_name, key) for key in SECRET_KEYS]
        + [_from_secret(options.secret_name, key, optional=True) for key in OPTIONAL_SECRET_KEYS],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "startupProbe": probe("/v2/health/live", 2, 60),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "readinessProbe": probe("/v2/health/ready", 5, 3),
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of the pod's own
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "models", "mountPath": MODEL_STORE},
        ],
    }


def _pod_spec(options: KubernetesOptions, instance: str, tenant: Tenant | None) -> dict[str, Any]:
    own = {"labelSelector": {"matchLabels": selector(instance)}}
    spec: dict[str, Any] = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": GID,
            "fsGroup": GID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {**own, "topologyKey": "kubernetes.io/hostname"}}
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "matchLabelKeys": ["pod-template-hash"],
                **own,
            }
        ],
        "containers": [_container(options, tenant)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": _TMP_BYTES}},
            {"name": "data", "emptyDir": {"sizeLimit": _DATA_BYTES}},
            {"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM}},
        ],
    }
    if tenant is not None and tenant.gpu is not None:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def deployment(
    options: KubernetesOptions, namespace: str, instance: str, replicas: int | None, tenant: Tenant | None = None
) -> dict[str, Any]:
    """The hardened Deployment of one instance; a tenant's starts no surge pod when it holds GPUs.

    ``replicas`` is ``None`` for an autoscaled Deployment: the field is left out, so that ``kubectl apply`` never
    resets what the autoscaler set.
    """
    surge = 1 if tenant is None else tenant.surge
    count = {} if replicas is None else {"replicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(NAME, namespace, instance, tenant),
        "spec": {
            **count,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(instance)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0 if surge else 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(instance, tenant),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(CONTAINER_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": _pod_spec(options, instance, tenant),
            },
        },
    }


def service(namespace: str, instance: str, tenant: Tenant | None = None) -> dict[str, Any]:
    """A cluster-internal Service in front of one instance's pods; the gateway routes to it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(NAME, namespace, instance, tenant),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(instance),
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(namespace: str, instance: str) -> dict[str, Any]:
    """At most one replica down at a time for voluntary disruptions (drains, upgrades)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_metadata(NAME, namespace, instance),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(instance)}},
    }


def _peer(target: EgressTarget) -> dict[str, Any]:
    if target.cidr is not None:
        return {"ipBlock": {"cidr": target.cidr}}
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": target.namespace}}}


def network_policy(
    options: KubernetesOptions,
    namespace: str,
    instance: str,
    pod_selector: dict[str, Any],
    tenant: Tenant | None = None,
) -> dict[str, Any]:
    """Ingress only from the gateway and the monitoring namespaces, to port 8080 (the whole API, ``/metrics``
    included); egress only to PostgreSQL, Redis and the cluster DNS."""

    def from_namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    http = [{"protocol": "TCP", "port": CONTAINER_PORT}]
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    postgres, redis = options.postgres_target, options.redis_target
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(NAME, namespace, instance, tenant),
        "spec": {
            "podSelector": pod_selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [from_namespace(options.gateway_namespace)], "ports": http},
                {"from": [from_namespace(options.monitoring_namespace)], "ports": http},
            ],
            "egress": [
                {"to": [_peer(postgres)], "ports": [{"protocol": "TCP", "port": postgres.port}]},
                {"to": [_peer(redis)], "ports": [{"protocol": "TCP", "port": redis.port}]},
                {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            ],
        },
    }
