"""Options are validated when built: every bad value is an ``invalid_argument`` naming what is wrong."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from warden.deploy import (
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
from warden.deploy.options import parse_quantity
from warden.errors import InvalidArgument
from warden.jobs.images import parse_image

IMAGE = parse_image("registry.example/warden@sha256:" + "cd" * 32)
GPU_IMAGE = parse_image("registry.example/warden-gpu@sha256:" + "ce" * 32)
NFS = NfsExport("nfs.example.internal", "/srv/warden-models")


def options(**changes: Any) -> KubernetesOptions:
    return KubernetesOptions(**{"image": IMAGE, **changes})


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"namespace": "Warden"}, "--namespace: 'Warden' is not a DNS-1123 label"),
        ({"namespace": "warden_prod"}, "DNS-1123"),
        ({"namespace": "-warden"}, "DNS-1123"),
        ({"namespace": "w" * 64}, "DNS-1123"),
        ({"gateway_namespace": "ingress nginx"}, "--gateway-namespace"),
        ({"monitoring_namespace": ""}, "--monitoring-namespace"),
        ({"secret_name": "Warden.Secret"}, "--secret-name"),
        ({"storage_class": "Fast_SSD"}, "--storage-class"),
        ({"replicas": 0}, "--replicas: must be at least 1"),
        ({"replicas": -2}, "--replicas"),
        ({"tenant_replicas": 0}, "--tenant-replicas"),
        ({"queue_target": 0}, "--queue-target"),
        ({"replicas": 4, "max_replicas": 3}, "--max-replicas (3) is below --replicas (4)"),
        ({"cpu": "two"}, "--cpu: 'two' is not a quantity"),
        ({"cpu": "0"}, "--cpu: '0' must be more than zero"),
        ({"cpu": "-1"}, "--cpu"),
        ({"cpu": "1e3"}, "--cpu"),
        ({"memory": "4GB"}, "--memory: '4GB' is not a quantity"),
        ({"memory": "4 Gi"}, "--memory"),
        ({"model_store_size": "lots"}, "--model-store-size"),
        ({"prometheus_url": "prometheus:9090"}, "--prometheus-url"),
        ({"prometheus_url": "ftp://prometheus"}, "--prometheus-url"),
        ({"tenants": (Tenant("acme"), Tenant("acme"))}, "named twice"),
        ({"namespace": "warden-acme", "tenants": (Tenant("acme"),)}, "would share the namespace"),
        ({"tenants": (Tenant("acme"),)}, "give --model-store-nfs SERVER:/PATH"),
        ({"tenants": (Tenant("acme"),)}, "a separate, empty volume"),
        ({"tenants": (Tenant("acme", gpu=GpuRequest(1)),), "model_store_nfs": NFS}, "give --gpu-image"),
        ({"tenants": (Tenant("acme", gpu=GpuRequest(1)),), "model_store_nfs": NFS}, "onnxruntime is CPU-only"),
        (
            {"tenants": (Tenant("a"), Tenant("b", gpu=GpuRequest(1, "1g.10gb"))), "model_store_nfs": NFS},
            "--gpu: tenant(s) b run on GPUs",
        ),
        ({"model_store_nfs": NFS, "storage_class": "nfs-client"}, "--storage-class"),
    ],
)
def test_when_an_option_is_out_of_range_then_it_is_refused_with_a_clear_message(
    changes: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        options(**changes)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("acme_corp", "cannot name a namespace"),  # a tenant name may hold '_'; a namespace may not
        ("a" * 57, "cannot name a namespace"),  # warden- + 57 is 64 characters
        ("Acme", "is not a tenant name"),
        ("", "is not a tenant name"),
        ("-acme", "is not a tenant name"),
    ],
)
def test_when_a_tenant_cannot_be_a_kubernetes_namespace_then_it_is_refused(name: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Tenant(name)


def test_a_tenant_namespace_is_warden_and_its_name_up_to_63_characters() -> None:
    assert Tenant("acme").namespace == "warden-acme"
    assert len(Tenant("a" * 56).namespace) == 63


@pytest.mark.parametrize(
    ("text", "tenant", "resource", "count"),
    [
        ("acme=1", "acme", "nvidia.com/gpu", 1),
        ("acme=4", "acme", "nvidia.com/gpu", 4),
        ("acme=1g.10gb:1", "acme", "nvidia.com/mig-1g.10gb", 1),
        ("acme=mig-3g.40gb:2", "acme", "nvidia.com/mig-3g.40gb", 2),
        ("beta=7g.80gb:1", "beta", "nvidia.com/mig-7g.80gb", 1),
        (" acme = 2g.20gb:3 ", "acme", "nvidia.com/mig-2g.20gb", 3),
    ],
)
def test_gpu_requests_are_whole_gpus_or_mig_slices(text: str, tenant: str, resource: str, count: int) -> None:
    name, gpu = parse_gpu(text)
    assert (name, gpu.resource, gpu.count) == (tenant, resource, count)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("acme", "TENANT=VALUE"),
        ("=2", "TENANT=VALUE"),
        ("acme=", "TENANT=VALUE"),
        ("acme=two", "whole number"),
        ("acme=0", "at least 1"),
        ("acme=1g.10gb", "whole number"),
        ("acme=1g.10gb:0", "at least 1"),
        ("acme=8g.80gb:1", "not a MIG profile"),
        ("acme=0g.10gb:1", "not a MIG profile"),
        ("acme=1g.10GB:1", "not a MIG profile"),
        ("acme=1g.10gb+me:1", "not a MIG profile"),
        ("acme=a100:1", "not a MIG profile"),
    ],
)
def test_when_a_gpu_request_is_malformed_then_it_is_refused(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        parse_gpu(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme=cpu:8", Quota(cpu="8")),
        ("acme=cpu:8,memory:16Gi,pods:4,storage:50Gi", Quota(cpu="8", memory="16Gi", pods=4, storage="50Gi")),
        ("acme=pods:3, memory:12Gi", Quota(memory="12Gi", pods=3)),
    ],
)
def test_quota_overrides_name_any_of_cpu_memory_pods_and_storage(text: str, expected: Quota) -> None:
    assert parse_quota(text) == ("acme", expected)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("acme", "TENANT=VALUE"),
        ("acme=gpu:2", "KEY:AMOUNT"),
        ("acme=cpu", "KEY:AMOUNT"),
        ("acme=cpu:", "KEY:AMOUNT"),
        ("acme=cpu:4,cpu:8", "cpu given twice"),
        ("acme=pods:two", "not a whole number"),
        ("acme=pods:0", "at least 1"),
        ("acme=memory:lots", "not a quantity"),
    ],
)
def test_when_a_quota_is_malformed_then_it_is_refused(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        parse_quota(text)


@pytest.mark.parametrize(
    ("quota", "needle"),
    [
        (Quota(cpu="1"), "cpu 1 for tenant 'acme' is below what it needs"),
        (Quota(memory="6Gi"), "memory 6Gi"),
        (Quota(pods=1), "pods 1 for tenant 'acme' is below --tenant-replicas (2)"),
        (Quota(storage="10Gi"), "storage 10Gi"),
    ],
)
def test_when_a_quota_cannot_hold_the_tenants_replicas_then_it_is_refused(quota: Quota, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        options(tenants=(Tenant("acme", quota=quota),), tenant_replicas=2, cpu="2", memory="4Gi")


def test_a_quota_exactly_at_what_the_replicas_need_is_accepted() -> None:
    quota = Quota(cpu="4", memory="8Gi", pods=2, storage="20Gi")
    built = options(tenants=(Tenant("acme", quota=quota),), tenant_replicas=2, model_store_nfs=NFS)
    assert built.tenants[0].quota == quota


def test_tenants_with_the_nfs_store_and_gpus_with_the_gpu_image_are_accepted() -> None:
    built = options(
        tenants=(Tenant("acme", gpu=GpuRequest(1)), Tenant("beta")), model_store_nfs=NFS, gpu_image=GPU_IMAGE
    )
    assert [t.name for t in built.tenants] == ["acme", "beta"]


@pytest.mark.parametrize(
    ("tenant", "image"),
    [
        (None, IMAGE),
        (Tenant("beta"), IMAGE),
        (Tenant("acme", gpu=GpuRequest(1)), GPU_IMAGE),
        (Tenant("acme", gpu=GpuRequest(2, "1g.10gb")), GPU_IMAGE),
    ],
)
def test_only_tenants_with_gpus_run_the_gpu_image(tenant: Tenant | None, image: object) -> None:
    built = options(
        tenants=(Tenant("acme", gpu=GpuRequest(1)), Tenant("beta")), model_store_nfs=NFS, gpu_image=GPU_IMAGE
    )
    assert built.image_for(tenant) == image


@pytest.mark.parametrize(
    ("text", "server", "path"),
    [
        ("nfs.example.internal:/srv/warden-models", "nfs.example.internal", "/srv/warden-models"),
        ("NFS-1.Example.com:/exports/models/", "NFS-1.Example.com", "/exports/models/"),
        ("filer:/", "filer", "/"),
        ("10.0.3.7:/vol/warden_models", "10.0.3.7", "/vol/warden_models"),
        (" nas01:/a/b.c/d-e ", "nas01", "/a/b.c/d-e"),
    ],
)
def test_the_nfs_store_is_a_server_and_an_absolute_export_path(text: str, server: str, path: str) -> None:
    assert parse_nfs(text) == NfsExport(server, path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nfs.example.internal", "not of the form SERVER:/PATH"),
        ("nfs.example.internal:srv/models", "not of the form SERVER:/PATH"),
        (":/srv/models", "not of the form SERVER:/PATH"),
        ("/srv/models", "not of the form SERVER:/PATH"),
        ("nfs_server:/srv/models", "'nfs_server' is not a host name or an IPv4 address"),
        ("nfs.example..internal:/srv", "is not a host name"),
        ("-nfs:/srv", "is not a host name"),
        ("nfs.example.internal.:/srv", "is not a host name"),
        ("10.0.3.999:/srv", "is not a host name"),
        (f"{'a' * 64}.example:/srv", "is not a host name"),
        ("fd00::7:/srv/models", "'fd00::7' is an IPv6 address"),
        ("[fd00::7]:/srv/models", "is an IPv6 address"),
        ("nfs:/srv/../etc", "not an absolute export path"),
        ("nfs:/srv/./models", "not an absolute export path"),
        ("nfs:/srv/warden models", "not an absolute export path"),
        ("nfs:/srv/models,rw", "not an absolute export path"),
        ("nfs:/srv/a:/b", "not an absolute export path"),
    ],
)
def test_when_the_nfs_store_is_malformed_then_it_is_refused(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        parse_nfs(text)


@pytest.mark.parametrize(
    ("text", "port", "expected"),
    [
        ("10.0.3.0/24", 5432, EgressTarget(port=5432, cidr="10.0.3.0/24")),
        ("10.0.3.7/32", 5432, EgressTarget(port=5432, cidr="10.0.3.7/32")),
        ("fd00:1::/64", 6379, EgressTarget(port=6379, cidr="fd00:1::/64")),
        ("namespace=databases", 5433, EgressTarget(port=5433, namespace="databases")),
    ],
)
def test_egress_targets_are_an_ip_block_or_a_namespace(text: str, port: int, expected: EgressTarget) -> None:
    assert parse_egress("--postgres", text, port) == expected


@pytest.mark.parametrize(
    ("text", "port", "needle"),
    [
        ("db.internal", 5432, "--postgres: 'db.internal' is not a network in CIDR notation"),
        ("10.0.3.7/24", 5432, "host bits set"),
        ("10.0.3.0/24", 0, "--postgres: port 0 is not between 1 and 65535"),
        ("10.0.3.0/24", 70000, "port 70000"),
        ("namespace=Data_Bases", 5432, "DNS-1123"),
        ("namespace=", 5432, "DNS-1123"),
    ],
)
def test_when_an_egress_target_is_malformed_then_it_is_refused(text: str, port: int, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        parse_egress("--postgres", text, port)


def test_gpu_and_quota_options_must_name_a_declared_tenant_once() -> None:
    with pytest.raises(InvalidArgument, match="'beta' is not a tenant given with --tenant"):
        tenants_from_options(["acme"], [parse_gpu("beta=1")], [])
    with pytest.raises(InvalidArgument, match="--gpu: tenant 'acme' given twice"):
        tenants_from_options(["acme"], [parse_gpu("acme=1"), parse_gpu("acme=2")], [])
    with pytest.raises(InvalidArgument, match="--tenant-quota: 'beta'"):
        tenants_from_options(["acme"], [], [parse_quota("beta=pods:2")])


def test_tenants_keep_the_order_given_with_their_gpus_and_quotas() -> None:
    tenants = tenants_from_options(["zeta", "acme"], [parse_gpu("acme=1g.5gb:1")], [parse_quota("zeta=pods:5")])
    assert tenants == (
        Tenant("zeta", quota=Quota(pods=5)),
        Tenant("acme", gpu=GpuRequest(1, "1g.5gb")),
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("4Gi", Decimal(4 * 1024**3)),
        ("512Mi", Decimal(512 * 1024**2)),
        ("1k", Decimal(1000)),
        ("3G", Decimal(3 * 10**9)),
    ],
)
def test_quantities_read_as_kubernetes_reads_them(text: str, value: Decimal) -> None:
    assert parse_quantity("--memory", text) == value


@pytest.mark.parametrize(("cpu", "workers"), [("500m", 1), ("1", 1), ("1999m", 1), ("2", 2), ("7.5", 7)])
def test_workers_are_the_whole_cpus_of_a_replica_and_at_least_one(cpu: str, workers: int) -> None:
    assert options(cpu=cpu).workers == workers
