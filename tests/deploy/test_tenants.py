"""A tenant with dedicated isolation gets its own restricted namespace, quota, limits, policy and pinned Deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from warden.deploy import GpuRequest, KubernetesOptions, NfsExport, Quota, Tenant, parse_egress, render
from warden.deploy.tenants import limit_range, resource_quota, tenant_objects
from warden.jobs.images import parse_image

IMAGE = parse_image("registry.example/warden@sha256:" + "ef" * 32)
GPU_IMAGE = parse_image("registry.example/warden-gpu@sha256:" + "fe" * 32)
NFS = NfsExport("filer.example.internal", "/exports/warden-models")


def options(*tenants: Tenant, **changes: Any) -> KubernetesOptions:
    return KubernetesOptions(
        **{"image": IMAGE, "tenants": tenants, "model_store_nfs": NFS, "gpu_image": GPU_IMAGE, **changes}
    )


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [item for item in objects if item["kind"] == kind]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = of_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return found


def test_every_object_of_a_tenant_lives_in_its_own_namespace_which_comes_first() -> None:
    tenant = Tenant("acme")
    objects = tenant_objects(options(tenant), tenant)

    assert [item["kind"] for item in objects] == [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    ]
    assert objects[0]["metadata"]["name"] == "warden-acme"
    namespaced = [item for item in objects[1:] if item["kind"] != "PersistentVolume"]
    assert all(item["metadata"]["namespace"] == "warden-acme" for item in namespaced)
    assert all(item["metadata"]["labels"]["warden.io/tenant"] == "acme" for item in objects)


def test_the_tenants_model_store_is_the_export_the_shared_deployment_writes_to() -> None:
    documents = [item for file in render(options(Tenant("acme"))) for item in file.objects]
    volumes = {d["spec"]["claimRef"]["namespace"]: d for d in documents if d["kind"] == "PersistentVolume"}
    claims = {d["metadata"]["namespace"]: d for d in documents if d["kind"] == "PersistentVolumeClaim"}

    assert volumes["warden-acme"]["spec"]["nfs"] == volumes["warden"]["spec"]["nfs"]
    assert volumes["warden"]["spec"]["nfs"] == {"server": "filer.example.internal", "path": "/exports/warden-models"}
    for namespace in ("warden", "warden-acme"):
        assert claims[namespace]["spec"]["volumeName"] == volumes[namespace]["metadata"]["name"]
        assert claims[namespace]["spec"]["storageClassName"] == ""
    assert volumes["warden-acme"]["metadata"]["name"] != volumes["warden"]["metadata"]["name"]


def test_the_tenant_namespace_is_held_to_pod_security_restricted() -> None:
    tenant = Tenant("acme")
    labels = of_kind(tenant_objects(options(tenant), tenant), "Namespace")["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {"restricted"}


def test_the_tenants_deployment_serves_that_tenant_only() -> None:
    tenant = Tenant("acme")
    objects = tenant_objects(options(tenant, tenant_replicas=3), tenant)
    config = of_kind(objects, "ConfigMap")["data"]

    assert json.loads(config["WARDEN_SERVE_TENANTS"]) == ["acme"]
    assert of_kind(objects, "Deployment")["spec"]["replicas"] == 3
    assert container(objects)["envFrom"] == [{"configMapRef": {"name": "warden"}}]
    assert (
        of_kind(objects, "Service")["spec"]["selector"]
        == of_kind(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )


def test_the_shared_deployment_is_not_pinned_to_a_tenant() -> None:
    shared = next(f for f in render(options(Tenant("acme"))) if f.path == "02-configmap.yaml")
    assert "WARDEN_SERVE_TENANTS" not in shared.objects[0]["data"]


def test_the_quota_holds_the_replicas_and_one_surge_pod_by_default() -> None:
    tenant = Tenant("acme")
    hard = resource_quota(options(tenant, tenant_replicas=2, cpu="1500m", memory="3Gi"), tenant)["spec"]["hard"]
    assert hard == {
        "pods": "3",
        "requests.cpu": "4500m",
        "limits.cpu": "4500m",
        "requests.memory": "9Gi",
        "limits.memory": "9Gi",
        "persistentvolumeclaims": "1",
        "requests.storage": "20Gi",
    }


def test_quota_overrides_replace_only_what_they_name() -> None:
    tenant = Tenant("acme", quota=Quota(cpu="16", pods=10))
    hard = resource_quota(options(tenant), tenant)["spec"]["hard"]
    assert (hard["requests.cpu"], hard["limits.cpu"], hard["pods"]) == ("16", "16", "10")
    assert hard["limits.memory"] == "8Gi"  # 2 pods (1 replica + 1 surge) x 4Gi


def test_the_limit_range_gives_unsized_containers_the_replicas_size_and_caps_them_at_it() -> None:
    tenant = Tenant("acme")
    (limits,) = limit_range(options(tenant, cpu="3", memory="6Gi"), tenant)["spec"]["limits"]
    size = {"cpu": "3", "memory": "6Gi"}
    assert limits == {"type": "Container", "default": size, "defaultRequest": size, "max": size}


@pytest.mark.parametrize(
    ("gpu", "resource"),
    [(GpuRequest(2), "nvidia.com/gpu"), (GpuRequest(1, "1g.10gb"), "nvidia.com/mig-1g.10gb")],
)
def test_gpus_are_requested_by_each_replica_and_counted_by_the_quota(gpu: GpuRequest, resource: str) -> None:
    tenant = Tenant("acme", gpu=gpu)
    objects = tenant_objects(options(tenant, tenant_replicas=3), tenant)
    resources_ = container(objects)["resources"]

    assert container(objects)["image"] == GPU_IMAGE.pinned
    assert resources_["limits"][resource] == str(gpu.count)
    assert resources_["requests"][resource] == str(gpu.count)
    hard = of_kind(objects, "ResourceQuota")["spec"]["hard"]
    assert hard[f"requests.{resource}"] == str(3 * gpu.count)  # no surge pod with GPUs
    assert hard["pods"] == "3"
    assert of_kind(objects, "ConfigMap")["data"]["WARDEN_DEVICE"] == "cuda"


def test_a_gpu_tenant_rolls_over_in_place_and_tolerates_gpu_nodes() -> None:
    tenant = Tenant("acme", gpu=GpuRequest(1))
    deployment = of_kind(tenant_objects(options(tenant), tenant), "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in deployment["spec"]["template"][
        "spec"
    ]["tolerations"]


def test_a_tenant_without_gpus_asks_for_none_and_runs_on_the_cpu() -> None:
    tenant = Tenant("acme")
    objects = tenant_objects(options(tenant), tenant)
    assert not any(key.startswith("nvidia.com/") for key in container(objects)["resources"]["limits"])
    assert not any("nvidia.com" in key for key in of_kind(objects, "ResourceQuota")["spec"]["hard"])
    assert of_kind(objects, "ConfigMap")["data"]["WARDEN_DEVICE"] == "cpu"
    assert container(objects)["image"] == IMAGE.pinned
    assert "tolerations" not in of_kind(objects, "Deployment")["spec"]["template"]["spec"]


def test_the_tenant_network_policy_covers_every_pod_of_the_namespace() -> None:
    tenant = Tenant("acme")
    built = options(tenant, postgres=parse_egress("--postgres", "10.1.0.0/16", 5432), gateway_namespace="gw")
    policy = of_kind(tenant_objects(built, tenant), "NetworkPolicy")["spec"]

    assert policy["podSelector"] == {}
    assert policy["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}}
    ]
    assert policy["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}]
    assert policy["egress"][1]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "warden"}}}
    ]


def test_each_tenant_is_rendered_to_a_file_of_its_own() -> None:
    paths = [f.path for f in render(options(Tenant("acme"), Tenant("beta")))]
    assert "30-tenant-acme.yaml" in paths
    assert "30-tenant-beta.yaml" in paths
