"""What ``warden deploy k8s`` renders from: frozen, validated options, and the parsers of their command-line forms.

Everything is checked when an option object is built, so a renderer given one never produces an object the API
server would refuse for a name or a quantity: names are DNS-1123 labels, quantities are plain Kubernetes
quantities (``500m``, ``2``, ``4Gi``; no exponent forms), counts are positive, and every tenant's quota fits the
replicas it must hold. A failure is :class:`~warden.errors.InvalidArgument` naming the option at fault.

Tenants come from the command line, never from a database: ``--tenant NAME`` declares a tenant whose isolation is
*dedicated* (its own namespace and Deployment), ``--tenant-quota NAME=cpu:8,memory:16Gi,pods:4`` overrides parts
of the quota computed for it, and ``--gpu NAME=1`` or ``--gpu NAME=1g.10gb:2`` gives each of its replicas whole
GPUs or MIG slices. Options that only work together are checked together: a dedicated tenant needs
``--model-store-nfs`` (its pods must read the same model store as the shared ones), and a tenant with GPUs needs
``--gpu-image`` (the standard image's onnxruntime is CPU-only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final, TypeVar

from warden.errors import InvalidArgument
from warden.jobs.images import ImageRef
from warden.settings import NAME_REGEX

__all__ = [
    "Autoscaler",
    "EgressTarget",
    "GpuRequest",
    "KubernetesOptions",
    "NfsExport",
    "Quota",
    "Tenant",
    "parse_egress",
    "parse_gpu",
    "parse_nfs",
    "parse_quantity",
    "parse_quota",
    "tenants_from_options",
]

DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
TENANT_NAMESPACE_PREFIX: Final = "warden-"
_TENANT: Final = re.compile(NAME_REGEX)
_QUANTITY: Final = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<suffix>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_SUFFIXES: Final[dict[str, Decimal]] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate(("k", "M", "G", "T", "P", "E"), start=1)},
    **{suffix: Decimal(1024) ** power for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}
_MIG_PROFILE: Final = re.compile(r"(?:mig-)?(?P<slices>[1-7])g\.(?P<memory>[1-9][0-9]{0,3})gb")
_QUOTA_KEYS: Final = frozenset({"cpu", "memory", "pods", "storage"})
_HOST_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_EXPORT_PATH: Final = re.compile(r"/[A-Za-z0-9._~+@%=/-]*")
_T = TypeVar("_T")


def parse_quantity(option: str, text: str) -> Decimal:
    """The value of a positive Kubernetes quantity (``500m`` is 0.5, ``4Gi`` is 4294967296)."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"{option}: {text!r} is not a quantity such as 500m, 2, 512Mi or 4Gi")
    value = Decimal(match["number"]) * _SUFFIXES[match["suffix"] or ""]
    if value <= 0:
        raise InvalidArgument(f"{option}: {text!r} must be more than zero")
    return value


def _label(option: str, value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise InvalidArgument(
            f"{option}: {value!r} is not a DNS-1123 label (1-63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit)"
        )
    return value


def _positive(option: str, value: int) -> int:
    if value < 1:
        raise InvalidArgument(f"{option}: must be at least 1, not {value}")
    return value


@dataclass(frozen=True)
class GpuRequest:
    """GPUs for each replica of a tenant: ``count`` whole GPUs, or ``count`` MIG slices of ``profile`` (``1g.10gb``)."""

    count: int
    profile: str | None = None

    def __post_init__(self) -> None:
        _positive("--gpu count", self.count)
        if self.profile is not None and not _MIG_PROFILE.fullmatch(self.profile):
            raise InvalidArgument(
                f"--gpu: {self.profile!r} is not a MIG profile of the form <slices>g.<memory>gb, such as 1g.10gb"
            )

    @property
    def resource(self) -> str:
        """The extended resource the NVIDIA device plugin advertises: ``nvidia.com/gpu`` or ``nvidia.com/mig-…``."""
        if self.profile is None:
            return "nvidia.com/gpu"
        return f"nvidia.com/mig-{self.profile.removeprefix('mig-')}"


@dataclass(frozen=True)
class Quota:
    """Overrides of a tenant namespace's ResourceQuota; ``None`` keeps the value computed from its Deployment."""

    cpu: str | None = None
    memory: str | None = None
    pods: int | None = None
    storage: str | None = None

    def __post_init__(self) -> None:
        for option, value in (("cpu", self.cpu), ("memory", self.memory), ("storage", self.storage)):
            if value is not None:
                parse_quantity(f"--tenant-quota {option}", value)
        if self.pods is not None:
            _positive("--tenant-quota pods", self.pods)


@dataclass(frozen=True)
class Tenant:
    """A tenant with dedicated isolation: its own namespace, quota, network policy and Deployment."""

    name: str
    gpu: GpuRequest | None = None
    quota: Quota = field(default_factory=Quota)

    def __post_init__(self) -> None:
        if not _TENANT.fullmatch(self.name):
            raise InvalidArgument(f"--tenant: {self.name!r} is not a tenant name")
        if not DNS_LABEL.fullmatch(self.namespace):
            raise InvalidArgument(
                f"--tenant: {self.name!r} cannot name a namespace ({self.namespace!r} must be a DNS-1123 label: "
                f"no '_', at most {63 - len(TENANT_NAMESPACE_PREFIX)} characters)"
            )

    @property
    def namespace(self) -> str:
        """The tenant's own namespace: ``warden-NAME``."""
        return TENANT_NAMESPACE_PREFIX + self.name

    @property
    def surge(self) -> int:
        """Extra pods its rolling update starts: none with GPUs (a spare one is rarely free), else one."""
        return 0 if self.gpu is not None else 1


@dataclass(frozen=True)
class EgressTarget:
    """Where a backing service lives, for the egress rules: an IP block (``cidr``) or a namespace, and a port."""

    port: int
    cidr: str | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        if (self.cidr is None) == (self.namespace is None):
            raise InvalidArgument("an egress target is either an IP block (CIDR) or a namespace")
        if not 1 <= self.port <= 65535:
            raise InvalidArgument(f"port {self.port} is not between 1 and 65535")
        if self.cidr is not None:
            try:
                ipaddress.ip_network(self.cidr, strict=True)
            except ValueError as exc:
                raise InvalidArgument(f"{self.cidr!r} is not a network in CIDR notation: {exc}") from None
        if self.namespace is not None:
            _label("namespace", self.namespace)


def parse_egress(option: str, text: str, port: int) -> EgressTarget:
    """``10.0.3.0/24`` (an IP block) or ``namespace=NAME`` (every pod of that namespace), on ``port``."""
    value = text.strip()
    try:
        if value.startswith("namespace="):
            return EgressTarget(port=port, namespace=value.removeprefix("namespace="))
        return EgressTarget(port=port, cidr=value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{option}: {exc.message}") from None


@dataclass(frozen=True)
class NfsExport:
    """The NFS export holding the model store: ``server`` (a host name or an IPv4 address) and its absolute ``path``.

    Kubernetes hands ``server:path`` to ``mount.nfs`` as it is, which cannot read an unbracketed IPv6 address, so
    an IPv6 server is refused: name it by a host name instead.
    """

    server: str
    path: str

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.server.removeprefix("[").removesuffix("]"))
        except ValueError:
            address = None
        if address is not None and address.version == 6:
            raise InvalidArgument(
                f"--model-store-nfs: {self.server!r} is an IPv6 address, which Kubernetes cannot hand to mount.nfs "
                "(it writes SERVER:PATH without brackets); give the server's host name"
            )
        hostname = len(self.server) <= 253 and all(_HOST_LABEL.fullmatch(part) for part in self.server.split("."))
        if address is None and (not hostname or self.server.rpartition(".")[2].isdigit()):
            raise InvalidArgument(f"--model-store-nfs: {self.server!r} is not a host name or an IPv4 address")
        parts = self.path.split("/")
        if not _EXPORT_PATH.fullmatch(self.path) or "." in parts or ".." in parts:
            raise InvalidArgument(
                f"--model-store-nfs: {self.path!r} is not an absolute export path such as /srv/warden-models "
                "(letters, digits and ._~+@%=- between slashes; no '.' or '..')"
            )


def parse_nfs(text: str) -> NfsExport:
    """``SERVER:/PATH`` (``nfs.example.internal:/srv/warden-models``): the export every namespace's store binds to."""
    server, sep, path = text.strip().partition(":/")
    if not sep or not server:
        raise InvalidArgument(
            f"--model-store-nfs: {text!r} is not of the form SERVER:/PATH, such as nfs.example.internal:/srv/models"
        )
    return NfsExport(server, "/" + path)


class Autoscaler(StrEnum):
    """What scales the shared Deployment on queue depth: a HorizontalPodAutoscaler, or a KEDA ScaledObject."""

    HPA = "hpa"
    KEDA = "keda"


def _split_assignment(option: str, text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise InvalidArgument(f"{option}: {text!r} is not of the form TENANT=VALUE")
    return name.strip(), value.strip()


def parse_gpu(text: str) -> tuple[str, GpuRequest]:
    """``TENANT=COUNT`` (whole GPUs) or ``TENANT=PROFILE:COUNT`` (MIG slices, ``1g.10gb:2``), per replica."""
    tenant, value = _split_assignment("--gpu", text)
    profile, sep, count = value.rpartition(":")
    if not count.isdigit():
        raise InvalidArgument(f"--gpu: {text!r} must end in a whole number of GPUs or MIG slices")
    return tenant, GpuRequest(int(count), profile if sep else None)


def parse_quota(text: str) -> tuple[str, Quota]:
    """``TENANT=cpu:8,memory:16Gi,pods:4,storage:50Gi``: any of the four, each at most once."""
    tenant, value = _split_assignment("--tenant-quota", text)
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, sep, amount = item.strip().partition(":")
        if not sep or key not in _QUOTA_KEYS or not amount:
            raise InvalidArgument(
                f"--tenant-quota: {item.strip()!r} is not KEY:AMOUNT with KEY one of {', '.join(sorted(_QUOTA_KEYS))}"
            )
        if key in fields:
            raise InvalidArgument(f"--tenant-quota: {key} given twice for tenant {tenant!r}")
        fields[key] = amount
    pods = fields.pop("pods", None)
    if pods is not None and not pods.isdigit():
        raise InvalidArgument(f"--tenant-quota: pods {pods!r} is not a whole number")
    return tenant, Quota(pods=None if pods is None else int(pods), **fields)


def tenants_from_options(
    names: Iterable[str], gpus: Iterable[tuple[str, GpuRequest]], quotas: Iterable[tuple[str, Quota]]
) -> tuple[Tenant, ...]:
    """The dedicated tenants named by ``--tenant``, with their ``--gpu`` and ``--tenant-quota``, in order given."""
    ordered = list(names)
    gpu_of: dict[str, GpuRequest] = _unique("--gpu", gpus, ordered)
    quota_of: dict[str, Quota] = _unique("--tenant-quota", quotas, ordered)
    return tuple(Tenant(name, gpu_of.get(name), quota_of.get(name, Quota())) for name in ordered)


def _unique(option: str, pairs: Iterable[tuple[str, _T]], tenants: list[str]) -> dict[str, _T]:
    found: dict[str, _T] = {}
    for tenant, value in pairs:
        if tenant not in tenants:
            raise InvalidArgument(f"{option}: {tenant!r} is not a tenant given with --tenant")
        if tenant in found:
            raise InvalidArgument(f"{option}: tenant {tenant!r} given twice")
        found[tenant] = value
    return found


@dataclass(frozen=True)
class KubernetesOptions:
    """Everything the manifests depend on; the defaults suit a cluster with an ingress controller and Prometheus."""

    image: ImageRef
    namespace: str = "warden"
    replicas: int = 2
    max_replicas: int = 10
    cpu: str = "2"
    memory: str = "4Gi"
    tenants: tuple[Tenant, ...] = ()
    tenant_replicas: int = 1
    gateway_namespace: str = "ingress-nginx"
    monitoring_namespace: str = "monitoring"
    postgres: EgressTarget | None = None
    """Default: every pod of :attr:`namespace` on port 5432."""
    redis: EgressTarget | None = None
    """Default: every pod of :attr:`namespace` on port 6379."""
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    queue_target: int = 4
    """Requests waiting per replica that the autoscalers aim for."""
    model_store_size: str = "20Gi"
    storage_class: str | None = None
    """Class of the dynamically provisioned model-store claim; only without :attr:`model_store_nfs`."""
    model_store_nfs: NfsExport | None = None
    """The export every namespace's model-store claim is bound to; required with tenants."""
    gpu_image: ImageRef | None = None
    """The image of the Deployments of tenants with GPUs (onnxruntime-gpu); required when one has GPUs."""
    autoscaler: Autoscaler = Autoscaler.HPA
    secret_name: str = "warden"  # noqa: S105 - the name of a Secret, not a secret

    def __post_init__(self) -> None:
        for option, value in (
            ("--namespace", self.namespace),
            ("--gateway-namespace", self.gateway_namespace),
            ("--monitoring-namespace", self.monitoring_namespace),
            ("--secret-name", self.secret_name),
        ):
            _label(option, value)
        if self.storage_class is not None:
            _label("--storage-class", self.storage_class)
        _positive("--replicas", self.replicas)
        _positive("--tenant-replicas", self.tenant_replicas)
        _positive("--queue-target", self.queue_target)
        if self.max_replicas < self.replicas:
            raise InvalidArgument(f"--max-replicas ({self.max_replicas}) is below --replicas ({self.replicas})")
        parse_quantity("--cpu", self.cpu)
        parse_quantity("--memory", self.memory)
        parse_quantity("--model-store-size", self.model_store_size)
        if not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", self.prometheus_url):
            raise InvalidArgument(f"--prometheus-url: {self.prometheus_url!r} is not an http(s) URL")
        names = [tenant.name for tenant in self.tenants]
        if len(set(names)) != len(names):
            raise InvalidArgument("--tenant: a tenant is named twice")
        for tenant in self.tenants:
            if tenant.namespace == self.namespace:
                raise InvalidArgument(f"--tenant: {tenant.name!r} would share the namespace {self.namespace!r}")
            self._check_quota_fits(tenant)
        self._check_together()

    def _check_together(self) -> None:
        if self.model_store_nfs is not None and self.storage_class is not None:
            raise InvalidArgument(
                "--storage-class: names the class of a dynamically provisioned model store; with --model-store-nfs "
                "every claim binds to the NFS volume rendered for it instead"
            )
        if self.tenants and self.model_store_nfs is None:
            raise InvalidArgument(
                "--tenant: a dedicated tenant's pods must read the models pushed through the shared Deployment, "
                "and a claim provisioned in its own namespace would be a separate, empty volume; give "
                "--model-store-nfs SERVER:/PATH so that every namespace's claim is bound to the same export"
            )
        on_gpus = [tenant.name for tenant in self.tenants if tenant.gpu is not None]
        if on_gpus and self.gpu_image is None:
            raise InvalidArgument(
                f"--gpu: tenant(s) {', '.join(on_gpus)} run on GPUs, which the standard image cannot (its "
                "onnxruntime is CPU-only, so the pods would fail with device_unavailable); give --gpu-image "
                "NAME@sha256:DIGEST, an image built with onnxruntime-gpu"
            )

    def image_for(self, tenant: Tenant | None) -> ImageRef:
        """The image a Deployment runs: :attr:`gpu_image` for a tenant with GPUs, :attr:`image` for the others."""
        if tenant is not None and tenant.gpu is not None and self.gpu_image is not None:
            return self.gpu_image
        return self.image

    @property
    def postgres_target(self) -> EgressTarget:
        """Where PostgreSQL is reached."""
        return self.postgres or EgressTarget(port=5432, namespace=self.namespace)

    @property
    def redis_target(self) -> EgressTarget:
        """Where Redis is reached."""
        return self.redis or EgressTarget(port=6379, namespace=self.namespace)

    @property
    def workers(self) -> int:
        """Inference workers per replica: one per whole CPU of its limit (the container sees the node's cores)."""
        return max(1, int(parse_quantity("--cpu", self.cpu)))

    @property
    def model_memory_budget(self) -> int:
        """Bytes of model sessions kept resident per replica: half its memory limit, leaving room for requests."""
        return int(parse_quantity("--memory", self.memory) / 2)

    def quota_floor(self, tenant: Tenant) -> Mapping[str, Decimal]:
        """What the tenant's Deployment needs at least, replicas only (no rolling-update surge)."""
        replicas = Decimal(self.tenant_replicas)
        return {
            "cpu": replicas * parse_quantity("--cpu", self.cpu),
            "memory": replicas * parse_quantity("--memory", self.memory),
            "pods": replicas,
            "storage": parse_quantity("--model-store-size", self.model_store_size),
        }

    def _check_quota_fits(self, tenant: Tenant) -> None:
        floor = self.quota_floor(tenant)
        given = {"cpu": tenant.quota.cpu, "memory": tenant.quota.memory, "storage": tenant.quota.storage}
        for key, text in given.items():
            if text is not None and parse_quantity(f"--tenant-quota {key}", text) < floor[key]:
                raise InvalidArgument(
                    f"--tenant-quota: {key} {text} for tenant {tenant.name!r} is below what it needs "
                    f"({self.tenant_replicas} replica(s) and the model store)"
                )
        if tenant.quota.pods is not None and tenant.quota.pods < floor["pods"]:
            raise InvalidArgument(
                f"--tenant-quota: pods {tenant.quota.pods} for tenant {tenant.name!r} is below "
                f"--tenant-replicas ({self.tenant_replicas})"
            )
