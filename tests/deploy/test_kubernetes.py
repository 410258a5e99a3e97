"""The rendered manifests: accepted by the Kubernetes schema (strict), clean under the policy check, and hardened.

The schema check is ``kubernetes-validate`` in strict mode, offline, for the newest Kubernetes it bundles and a
few before it. It has no schema for custom resources (its ``validate`` raises ``SchemaNotFoundError``, and its
command line only warns and exits 0), so the KEDA ScaledObject is checked against
``data/keda-scaledobject-v1alpha1.json``, a strict JSON Schema written from the KEDA CRD's documented fields,
whose metadata and HPA behaviour refer to Kubernetes' own definitions from the same bundle.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from warden.deploy import (
    Autoscaler,
    KubernetesOptions,
    ManifestFile,
    parse_egress,
    parse_gpu,
    parse_nfs,
    parse_quota,
    render,
)
from warden.deploy.kubernetes import CONTAINER_PORT, OPTIONAL_SECRET_KEYS, SECRET_KEYS, UID
from warden.deploy.options import tenants_from_options
from warden.jobs.images import parse_image
from warden.policy import Profile, check_text
from warden.settings import Settings, load_settings

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate.utils",
    reason="KUBERNETES SCHEMA NOT CHECKED: kubernetes-validate is not installed (pip install kubernetes-validate)",
)

IMAGE = parse_image("registry.example/warden:0.1.0@sha256:" + "ab" * 32)
GPU_IMAGE = parse_image("registry.example/warden-gpu:0.1.0@sha256:" + "ac" * 32)
NFS = parse_nfs("nfs.example.internal:/srv/warden-models")
KEDA_SCHEMA = Path(__file__).parent / "data" / "keda-scaledobject-v1alpha1.json"
VERSIONS = ["latest", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]


def options(**changes: Any) -> KubernetesOptions:
    return KubernetesOptions(**{"image": IMAGE, **changes})


SAMPLES = {
    "defaults": options(),
    "tenants with GPUs and MIG": options(
        tenants=tenants_from_options(
            ["acme", "beta", "cpu-only"],
            [parse_gpu("acme=2"), parse_gpu("beta=1g.10gb:1")],
            [parse_quota("beta=cpu:8,memory:32Gi,pods:6,storage:100Gi")],
        ),
        tenant_replicas=2,
        model_store_nfs=NFS,
        gpu_image=GPU_IMAGE,
    ),
    "KEDA, NFS store, no tenants": options(autoscaler=Autoscaler.KEDA, model_store_nfs=parse_nfs("10.0.3.7:/models")),
    "backends by CIDR, one replica, small": options(
        replicas=1,
        max_replicas=1,
        cpu="500m",
        memory="768Mi",
        postgres=parse_egress("--postgres", "10.20.0.0/16", 5432),
        redis=parse_egress("--redis", "fd00::/64", 6380),
        storage_class="nfs-client",
        namespace="inference",
        gateway_namespace="envoy-gateway-system",
    ),
}


def documents(files: list[ManifestFile]) -> list[dict[str, Any]]:
    """Every object, read back from the YAML text as ``kubectl`` would read it."""
    return [item for file in files for item in yaml.safe_load_all(file.text())]


def find(files: list[ManifestFile], kind: str, namespace: str | None = "warden") -> dict[str, Any]:
    (found,) = [d for d in documents(files) if d["kind"] == kind and d["metadata"].get("namespace") == namespace]
    return found


def pod(files: list[ManifestFile], namespace: str = "warden") -> dict[str, Any]:
    spec: dict[str, Any] = find(files, "Deployment", namespace)["spec"]["template"]["spec"]
    return spec


def keda_validator(version: str) -> jsonschema.protocols.Validator:
    """A validator of ScaledObjects, with Kubernetes' definitions of ``version`` (strict) for what it refers to."""
    bundle = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    definitions = Resource.from_contents(json.loads((bundle / "_definitions.json").read_text()))
    schema = json.loads(KEDA_SCHEMA.read_text())
    registry: Registry[Any] = Registry().with_resources(
        [(definitions.id() or "", definitions), (schema["$id"], Resource.from_contents(schema))]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(document: dict[str, Any], version: str) -> None:
    """Raise on any schema problem: kubernetes-validate for built-in kinds, the KEDA schema for ScaledObject."""
    if document["kind"] == "ScaledObject":
        keda_validator(kubernetes_validate.latest_version()).validate(document)
        return
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_object_passes_the_schema_in_strict_mode(sample: KubernetesOptions, version: str) -> None:
    if version == "latest":
        version = kubernetes_validate.latest_version()
    for document in documents(render(sample)):
        validate(document, version)  # raises ValidationError on any problem


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
def test_every_rendered_file_passes_the_restricted_policy_check_with_no_finding(sample: KubernetesOptions) -> None:
    for file in render(sample):
        kind, findings = check_text(file.text(), file.path, Profile.RESTRICTED)
        assert kind == "kubernetes"
        assert findings == [], file.path


def test_the_policy_check_does_see_the_workloads_it_passes() -> None:
    files = render(SAMPLES["tenants with GPUs and MIG"])
    broken = find(files, "Deployment", "warden-acme")
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    _, findings = check_text(yaml.safe_dump(broken), "tenant.yaml", Profile.RESTRICTED)
    assert [f.rule_id for f in findings] == ["read-only-root"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "triggers", 0, "metadata", "serverAdress"], "http://typo:9090"),  # an unknown scaler option
        (["spec", "minReplicas"], 2),  # the HPA's name for KEDA's minReplicaCount
        (["spec", "triggers", 0, "metadata", "threshold"], "four"),
        (["spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleUp", "polices"], []),
        (["metadata", "label"], {"a": "b"}),
    ],
)
def test_the_keda_schema_would_catch_a_mistake(path: list[str | int], value: object) -> None:
    scaled = find(render(options(autoscaler=Autoscaler.KEDA)), "ScaledObject")
    keda_validator(kubernetes_validate.latest_version()).validate(scaled)
    target: Any = scaled
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        keda_validator(kubernetes_validate.latest_version()).validate(scaled)


def test_the_kubernetes_schema_would_catch_a_mistake() -> None:
    deployment = find(render(options()), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "nfs", "sever"], "nfs.example.internal"),  # a misspelt field
        (["spec", "persistentVolumeReclaimPolicy"], {"policy": "Retain"}),
        (["spec", "claimRef", "namespaces"], "warden"),
        (["metadata", "namespace"], 1),
    ],
)
def test_the_kubernetes_schema_would_catch_a_mistake_in_the_nfs_volume(path: list[str], value: object) -> None:
    volume = find(render(options(model_store_nfs=NFS)), "PersistentVolume", namespace=None)
    kubernetes_validate.validate(volume, kubernetes_validate.latest_version(), strict=True)
    target: Any = volume
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(volume, kubernetes_validate.latest_version(), strict=True)


def test_the_namespace_enforces_audits_and_warns_at_pod_security_restricted() -> None:
    labels = find(render(options()), "Namespace", namespace=None)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_the_pod_runs_as_a_fixed_non_root_user_with_nothing_to_escalate() -> None:
    spec = pod(render(options()))
    (container,) = spec["containers"]

    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (UID, UID) == (10001, 10001)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == IMAGE.pinned


def test_service_links_are_off_so_no_warden_port_variable_reaches_the_settings() -> None:
    assert pod(render(options()))["enableServiceLinks"] is False


def test_requests_equal_limits_and_the_workers_follow_the_cpu() -> None:
    files = render(options(cpu="3500m", memory="6Gi"))
    resources_ = pod(files)["containers"][0]["resources"]
    assert resources_["requests"] == resources_["limits"]
    assert resources_["limits"]["cpu"] == "3500m"
    assert resources_["limits"]["memory"] == "6Gi"
    config = find(files, "ConfigMap")["data"]
    assert config["WARDEN_WORKERS"] == "3"
    assert config["WARDEN_MODEL_MEMORY_BUDGET"] == str(3 * 1024**3)


def test_probes_ask_the_health_endpoints_on_port_8080() -> None:
    (container,) = pod(render(options()))["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_tmp_and_data_are_empty_dirs_and_without_nfs_the_model_store_is_one_provisioned_claim() -> None:
    files = render(options(storage_class="cephfs"))
    spec = pod(files)
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config = find(files, "ConfigMap")["data"]

    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108
    assert "emptyDir" in volumes[mounts[config["WARDEN_DATA_DIR"]]]
    claim = volumes[mounts[config["WARDEN_MODEL_STORE"]]]["persistentVolumeClaim"]["claimName"]
    pvc = find(files, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "cephfs"
    assert "volumeName" not in pvc["spec"]
    assert "PersistentVolume" not in {d["kind"] for d in documents(files)}


@pytest.mark.parametrize("namespace", ["warden", "warden-acme", "warden-beta", "warden-cpu-only"])
def test_with_nfs_each_namespace_claim_is_bound_to_a_retained_volume_of_its_own_on_the_one_export(
    namespace: str,
) -> None:
    files = render(SAMPLES["tenants with GPUs and MIG"])
    claim = find(files, "PersistentVolumeClaim", namespace)
    mounted = {v["name"]: v for v in pod(files, namespace)["volumes"]}["models"]["persistentVolumeClaim"]
    volumes = {d["metadata"]["name"]: d for d in documents(files) if d["kind"] == "PersistentVolume"}
    volume = volumes[claim["spec"]["volumeName"]]

    assert mounted["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == ""
    assert volume["spec"]["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": namespace,
        "name": claim["metadata"]["name"],
    }
    assert volume["spec"]["nfs"] == {"server": "nfs.example.internal", "path": "/srv/warden-models"}
    assert volume["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["spec"]["storageClassName"] == ""
    assert volume["spec"]["capacity"]["storage"] == claim["spec"]["resources"]["requests"]["storage"]
    assert "namespace" not in volume["metadata"]  # a PersistentVolume is cluster-scoped


def test_with_nfs_every_namespace_has_one_volume_and_their_names_differ() -> None:
    files = render(SAMPLES["tenants with GPUs and MIG"])
    volumes = [d for d in documents(files) if d["kind"] == "PersistentVolume"]
    claimed = sorted(v["spec"]["claimRef"]["namespace"] for v in volumes)
    assert claimed == ["warden", "warden-acme", "warden-beta", "warden-cpu-only"]
    assert len({v["metadata"]["name"] for v in volumes}) == len(volumes)


@pytest.mark.parametrize(
    ("namespace", "image", "device"),
    [
        ("warden", IMAGE, "cpu"),
        ("warden-acme", GPU_IMAGE, "cuda"),
        ("warden-beta", GPU_IMAGE, "cuda"),
        ("warden-cpu-only", IMAGE, "cpu"),
    ],
)
def test_the_deployments_of_tenants_with_gpus_run_the_gpu_image_and_the_others_the_standard_one(
    namespace: str, image: object, device: str
) -> None:
    files = render(SAMPLES["tenants with GPUs and MIG"])
    (container,) = pod(files, namespace)["containers"]
    assert container["image"] == str(image)
    assert find(files, "ConfigMap", namespace)["data"]["WARDEN_DEVICE"] == device


def test_replicas_keep_apart_and_spread_over_zones() -> None:
    spec = pod(render(options()))
    (preferred,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"] == preferred["podAffinityTerm"]["labelSelector"]


def test_settings_come_from_the_configmap_and_secrets_only_by_reference() -> None:
    secret = "warden-prod"  # noqa: S105 - a Secret's name
    (container,) = pod(render(options(secret_name=secret)))["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "warden"}}]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]} == {
        "WARDEN_SECRET_KEY": {"name": secret, "key": "WARDEN_SECRET_KEY"},
        "WARDEN_DATABASE_URL": {"name": secret, "key": "WARDEN_DATABASE_URL"},
        "WARDEN_REDIS_URL": {"name": secret, "key": "WARDEN_REDIS_URL"},
        "WARDEN_PREVIOUS_SECRET_KEYS": {"name": secret, "key": "WARDEN_PREVIOUS_SECRET_KEYS", "optional": True},
    }
    assert set(SECRET_KEYS) == {"WARDEN_SECRET_KEY", "WARDEN_DATABASE_URL", "WARDEN_REDIS_URL"}
    assert OPTIONAL_SECRET_KEYS == ("WARDEN_PREVIOUS_SECRET_KEYS",)


@pytest.mark.parametrize("namespace", ["warden", "warden-acme", "warden-cpu-only"])
def test_the_secrets_a_rotation_replaced_come_from_the_secret_if_it_has_them_and_never_from_the_configmap(
    namespace: str,
) -> None:
    files = render(SAMPLES["tenants with GPUs and MIG"])
    (container,) = pod(files, namespace)["containers"]
    (previous,) = [e for e in container["env"] if e["name"] == "WARDEN_PREVIOUS_SECRET_KEYS"]
    assert previous["valueFrom"]["secretKeyRef"]["optional"] is True
    assert all(e["valueFrom"]["secretKeyRef"].get("optional") is None for e in container["env"] if e is not previous)
    assert "WARDEN_PREVIOUS_SECRET_KEYS" not in find(files, "ConfigMap", namespace)["data"]


def test_no_secret_object_is_rendered() -> None:
    sample = SAMPLES["tenants with GPUs and MIG"]
    assert "Secret" not in {d["kind"] for d in documents(render(sample))}


@pytest.mark.parametrize("namespace", ["warden", "warden-acme", "warden-beta"])
def test_the_configmap_and_the_secret_keys_make_settings_warden_accepts(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = find(render(SAMPLES["tenants with GPUs and MIG"]), "ConfigMap", namespace)["data"]
    for name in list(config) + list(SECRET_KEYS) + list(OPTIONAL_SECRET_KEYS):
        assert name.removeprefix("WARDEN_").lower() in Settings.model_fields, name
    for name in [name for name in os.environ if name.upper().startswith("WARDEN_")]:
        monkeypatch.delenv(name)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WARDEN_SECRET_KEY", "x" * 32)
    monkeypatch.setenv("WARDEN_DATABASE_URL", "postgresql+psycopg://warden@db:5432/warden")
    monkeypatch.setenv("WARDEN_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("WARDEN_PREVIOUS_SECRET_KEYS", '["' + "y" * 32 + '"]')  # a line of the --from-env-file file
    settings = load_settings()
    assert [key.get_secret_value() for key in settings.previous_secret_keys] == ["y" * 32]
    assert settings.port == CONTAINER_PORT
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.log_format == "json"
    assert str(settings.model_store) == config["WARDEN_MODEL_STORE"]


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES.keys())
def test_the_shared_deployment_leaves_its_replicas_to_the_autoscaler(sample: KubernetesOptions) -> None:
    files = render(sample)
    assert "replicas" not in find(files, "Deployment", sample.namespace)["spec"]
    (scaler,) = [d for d in documents(files) if d["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}]
    floor = scaler["spec"].get("minReplicas", scaler["spec"].get("minReplicaCount"))
    assert floor == sample.replicas


def test_the_service_the_pdb_and_the_autoscaler_select_or_target_the_deployment() -> None:
    files = render(options(replicas=3, max_replicas=12, queue_target=8))
    deployment = find(files, "Deployment")
    pods = deployment["spec"]["selector"]["matchLabels"]
    assert pods.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert find(files, "Service")["spec"]["selector"] == pods
    assert find(files, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert find(files, "PodDisruptionBudget")["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": pods}}

    hpa = find(files, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "warden"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    (metric,) = hpa["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "warden_scheduler_queued"},
            "target": {"type": "AverageValue", "averageValue": "8"},
        },
    }


@pytest.mark.parametrize(
    ("autoscaler", "kind"),
    [(Autoscaler.HPA, "HorizontalPodAutoscaler"), (Autoscaler.KEDA, "ScaledObject")],
)
def test_exactly_one_autoscaler_is_rendered_the_one_chosen(autoscaler: Autoscaler, kind: str) -> None:
    sample = SAMPLES["tenants with GPUs and MIG"]
    files = render(dataclasses.replace(sample, autoscaler=autoscaler))
    kinds = [d["kind"] for d in documents(files)]
    assert [k for k in kinds if k in {"HorizontalPodAutoscaler", "ScaledObject"}] == [kind]


def test_the_keda_scaledobject_sums_the_queue_gauge_like_the_hpa_and_adopts_nothing() -> None:
    changes = {"namespace": "inference", "prometheus_url": "http://prom.monitoring:9090", "queue_target": 5}
    scaled = find(render(options(autoscaler=Autoscaler.KEDA, **changes)), "ScaledObject", "inference")
    hpa = find(render(options(**changes)), "HorizontalPodAutoscaler", "inference")
    (trigger,) = scaled["spec"]["triggers"]

    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prom.monitoring:9090"
    assert trigger["metadata"]["query"] == 'sum(warden_scheduler_queued{namespace="inference"})'
    assert trigger["metadata"]["threshold"] == "5"
    assert scaled["spec"]["scaleTargetRef"] == hpa["spec"]["scaleTargetRef"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 10)
    assert scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"] == {"behavior": hpa["spec"]["behavior"]}
    assert "annotations" not in scaled["metadata"]  # no scaledobject.keda.sh/transfer-hpa-ownership


def test_the_network_policy_admits_only_the_gateway_and_reaches_only_the_backends_and_dns() -> None:
    files = render(SAMPLES["backends by CIDR, one replica, small"])
    spec = find(files, "NetworkPolicy", "inference")["spec"]

    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"] == {
        "matchLabels": find(files, "Deployment", "inference")["spec"]["selector"]["matchLabels"]
    }
    sources = [rule["from"][0]["namespaceSelector"]["matchLabels"] for rule in spec["ingress"]]
    assert sources == [
        {"kubernetes.io/metadata.name": "envoy-gateway-system"},
        {"kubernetes.io/metadata.name": "monitoring"},
    ]
    assert all(rule["ports"] == [{"protocol": "TCP", "port": 8080}] for rule in spec["ingress"])
    postgres, redis, dns = spec["egress"]
    assert postgres == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    assert redis == {"to": [{"ipBlock": {"cidr": "fd00::/64"}}], "ports": [{"protocol": "TCP", "port": 6380}]}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert {p["port"] for p in dns["ports"]} == {53}


def test_by_default_the_backends_are_reached_in_the_warden_namespace() -> None:
    postgres, redis, _ = find(render(options()), "NetworkPolicy")["spec"]["egress"]
    selector = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "warden"}}}
    assert (postgres["to"], postgres["ports"][0]["port"]) == ([selector], 5432)
    assert (redis["to"], redis["ports"][0]["port"]) == ([selector], 6379)
