"""``warden deploy k8s``: the files it writes, its JSON, and one-line errors with the right exit status."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from warden.cli.deploy import deploy_app
from warden.cli.policy import policy_app

IMAGE = "registry.example/warden:0.1.0@sha256:" + "9a" * 32
GPU_IMAGE = "registry.example/warden-gpu:0.1.0@sha256:" + "a9" * 32
NFS = ["--model-store-nfs", "nfs.example.internal:/srv/warden-models"]
DOCS = Path(__file__).parents[2] / "docs" / "deploy.md"

app = typer.Typer()
app.add_typer(deploy_app, name="deploy")
app.add_typer(policy_app, name="policy")


def warden(*args: str | Path) -> Result:
    return CliRunner().invoke(app, list(map(str, args)))


def k8s(out: Path, *args: str) -> Result:
    return warden("deploy", "k8s", "--out", out, "--image", IMAGE, *args)


def one_error_line(result: Result) -> str:
    """The single error line a failed command must print, with nothing on stdout."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_when_rendered_then_every_file_is_listed_with_how_to_apply_it(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = k8s(out, "--replicas", "3", "--tenant", "acme", *NFS)

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert f"{out / '10-deployment.yaml'}  Deployment/warden/warden" in result.stdout
    assert f"{out / '30-tenant-acme.yaml'}  Namespace/warden-acme" in result.stdout
    assert f"kubectl apply -f {out}" in result.stdout
    assert "kubectl create secret generic warden -n NAMESPACE --from-env-file=FILE" in result.stdout
    assert "--from-literal" not in result.stdout
    assert "WARDEN_PREVIOUS_SECRET_KEYS" in result.stdout
    assert "warden, warden-acme" in result.stdout
    assert "replicas" not in yaml.safe_load((out / "10-deployment.yaml").read_text())["spec"]
    assert yaml.safe_load((out / "20-horizontalpodautoscaler.yaml").read_text())["spec"]["minReplicas"] == 3


def test_with_json_then_one_line_names_the_files_their_objects_and_the_secret_to_create(tmp_path: Path) -> None:
    result = k8s(
        tmp_path / "k8s",
        "--tenant", "acme",
        "--gpu", "acme=1g.10gb:1",
        "--gpu-image", GPU_IMAGE,
        *NFS,
        "--autoscaler", "keda",
        "--secret-name", "warden-prod",
        "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    report = json.loads(result.stdout)
    assert report["out"] == str(tmp_path / "k8s")
    files = {entry["path"]: entry["resources"] for entry in report["files"]}
    assert files["20-scaledobject.yaml"] == ["ScaledObject/warden/warden"]
    assert "20-horizontalpodautoscaler.yaml" not in files
    assert "Deployment/warden-acme/warden" in files["30-tenant-acme.yaml"]
    assert "PersistentVolume/warden-models-warden-acme" in files["30-tenant-acme.yaml"]
    assert report["secret"] == {
        "name": "warden-prod",
        "keys": ["WARDEN_SECRET_KEY", "WARDEN_DATABASE_URL", "WARDEN_REDIS_URL"],
        "optional_keys": ["WARDEN_PREVIOUS_SECRET_KEYS"],
        "namespaces": ["warden", "warden-acme"],
    }


def test_the_options_reach_the_files(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = k8s(
        out,
        "--namespace", "inference",
        "--cpu", "4",
        "--memory", "8Gi",
        "--tenant", "acme",
        "--tenant-quota", "acme=cpu:12,pods:3",
        "--gpu", "acme=2",
        "--gpu-image", GPU_IMAGE,
        "--model-store-nfs", "10.0.9.4:/exports/models",
        "--autoscaler", "keda",
        "--postgres", "10.0.3.0/24",
        "--redis", "namespace=cache",
        "--redis-port", "6380",
        "--gateway-namespace", "gateway",
        "--prometheus-url", "http://prom:9090",
        "--queue-target", "6",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    tenant = {d["kind"]: d for d in yaml.safe_load_all((out / "30-tenant-acme.yaml").read_text())}
    assert tenant["ResourceQuota"]["spec"]["hard"]["requests.cpu"] == "12"
    assert tenant["ResourceQuota"]["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"
    (container,) = tenant["Deployment"]["spec"]["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    assert (limits["cpu"], limits["memory"], limits["nvidia.com/gpu"]) == ("4", "8Gi", "2")
    assert container["image"] == GPU_IMAGE
    assert tenant["PersistentVolume"]["spec"]["nfs"] == {"server": "10.0.9.4", "path": "/exports/models"}
    shared = yaml.safe_load((out / "10-deployment.yaml").read_text())
    assert shared["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    policy = yaml.safe_load((out / "13-networkpolicy.yaml").read_text())["spec"]
    assert policy["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.3.0/24"}}]
    assert policy["egress"][1]["ports"] == [{"protocol": "TCP", "port": 6380}]
    assert (
        policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "gateway"
    )
    scaled = yaml.safe_load((out / "20-scaledobject.yaml").read_text())
    assert scaled["metadata"]["namespace"] == "inference"
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "6"
    assert not (out / "20-horizontalpodautoscaler.yaml").exists()
    volume, claim = yaml.safe_load_all((out / "03-model-store.yaml").read_text())
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]


def test_without_tenants_the_storage_class_reaches_the_provisioned_claim(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert k8s(out, "--storage-class", "cephfs").exit_code == 0
    (claim,) = yaml.safe_load_all((out / "03-model-store.yaml").read_text())
    assert claim["spec"]["storageClassName"] == "cephfs"


def test_what_it_writes_passes_warden_policy_check_restricted(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert k8s(out, "--tenant", "acme", "--gpu", "acme=1", "--gpu-image", GPU_IMAGE, *NFS).exit_code == 0
    files = sorted(out.rglob("*.yaml"))

    result = warden("policy", "check", *files, "--profile", "restricted")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0 error(s), 0 warning(s)"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--replicas", "0"], "--replicas: must be at least 1"),
        (["--replicas", "5", "--max-replicas", "2"], "--max-replicas (2) is below --replicas (5)"),
        (["--namespace", "Warden"], "--namespace: 'Warden' is not a DNS-1123 label"),
        (["--gateway-namespace", "gw_1"], "--gateway-namespace"),
        (["--cpu", "lots"], "--cpu: 'lots' is not a quantity"),
        (["--memory", "0Gi"], "--memory: '0Gi' must be more than zero"),
        (["--tenant", "acme_corp"], "cannot name a namespace"),
        (["--tenant", "acme", "--tenant", "acme"], "named twice"),
        (["--gpu", "acme=1"], "--gpu: 'acme' is not a tenant given with --tenant"),
        (["--tenant", "acme", "--gpu", "acme=9g.10gb:1"], "not a MIG profile"),
        (["--tenant", "acme", *NFS, "--tenant-quota", "acme=cpu:1"], "is below what it needs"),
        (["--tenant", "acme", "--tenant-quota", "acme=gpus:1"], "KEY:AMOUNT"),
        (["--tenant", "acme"], "--tenant: a dedicated tenant's pods must read the models pushed through the shared"),
        (["--tenant", "acme"], "give --model-store-nfs SERVER:/PATH"),
        (["--tenant", "acme", *NFS, "--gpu", "acme=1"], "give --gpu-image NAME@sha256:DIGEST"),
        (["--tenant", "acme", *NFS, "--gpu", "acme=1g.10gb:1"], "onnxruntime is CPU-only"),
        (["--model-store-nfs", "nfs.example.internal"], "--model-store-nfs: 'nfs.example.internal' is not of the"),
        (["--model-store-nfs", "nfs_1:/srv/models"], "'nfs_1' is not a host name or an IPv4 address"),
        (["--model-store-nfs", "nfs:/srv/../models"], "is not an absolute export path"),
        ([*NFS, "--storage-class", "cephfs"], "--storage-class"),
        (["--postgres", "db.example"], "--postgres: 'db.example' is not a network in CIDR notation"),
        (["--redis", "10.0.0.0/8", "--redis-port", "0"], "--redis: port 0"),
        (["--prometheus-url", "prometheus:9090"], "--prometheus-url"),
    ],
)
def test_when_an_option_is_invalid_then_one_line_says_so_and_the_exit_status_is_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "k8s"
    result = k8s(out, *args)

    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("warden: error: invalid_argument: ")
    assert needle in line
    assert not out.exists()


@pytest.mark.parametrize(
    "image",
    ["registry.example/warden:0.1.0", "registry.example/warden:latest", "registry.example/warden@sha256:abc"],
)
def test_when_the_image_is_not_pinned_by_digest_then_it_is_refused_with_exit_1(tmp_path: Path, image: str) -> None:
    result = warden("deploy", "k8s", "--out", tmp_path / "k8s", "--image", image)
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: image_refused: ")


@pytest.mark.parametrize("image", ["registry.example/warden-gpu:0.1.0", "registry.example/warden-gpu@sha256:abc"])
def test_when_the_gpu_image_is_not_pinned_by_digest_then_it_is_refused_like_the_image(
    tmp_path: Path, image: str
) -> None:
    result = k8s(tmp_path / "k8s", "--tenant", "acme", *NFS, "--gpu", "acme=1", "--gpu-image", image)
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: image_refused: ")
    assert not (tmp_path / "k8s").exists()


def test_an_autoscaler_other_than_hpa_or_keda_is_a_wrong_command_line(tmp_path: Path) -> None:
    result = k8s(tmp_path / "k8s", "--autoscaler", "both")
    assert result.exit_code == 2
    assert "--autoscaler" in result.stderr
    assert not (tmp_path / "k8s").exists()


def kubernetes_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text[text.index("## 4. Kubernetes") : text.index("\n## ", text.index("## 4. Kubernetes"))]


def test_the_documented_command_renders_and_no_documented_command_puts_a_secret_on_its_command_line(
    tmp_path: Path,
) -> None:
    section = kubernetes_section()
    (script,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    documented = shlex.split(script.split("\nkubectl")[0].replace("\\\n", " ").replace("<digest>", "ab" * 32))
    assert documented[:5] == ["warden", "deploy", "k8s", "--out", "k8s/"]

    result = warden("deploy", "k8s", "--out", tmp_path / "k8s", *documented[5:])
    assert result.exit_code == 0, result.output
    assert "--from-literal" not in section
    assert 'kubectl create secret generic warden -n "$ns" --from-env-file=warden.env' in script
    assert "umask 077" in script
    assert "WARDEN_PREVIOUS_SECRET_KEYS" in section


def test_the_docs_say_the_monitoring_namespace_reaches_the_whole_api_port() -> None:
    section = " ".join(kubernetes_section().split())
    assert "metrics port" not in section
    assert "both to port 8080. That port serves the whole API as well as `/metrics`" in section
    assert "(`WARDEN_METRICS_PUBLIC=true`)" in section
    assert "the gateway must not route `/metrics`" in section


def test_when_the_directory_holds_files_then_it_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    refused = k8s(tmp_path)
    assert refused.exit_code == 1
    assert one_error_line(refused).startswith("warden: error: conflict: ")

    forced = k8s(tmp_path, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "00-namespace.yaml").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_when_the_directory_cannot_be_created_then_io_error_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = k8s(blocker / "k8s")
    assert result.exit_code == 1
    assert one_error_line(result).startswith("warden: error: io_error: ")


def test_without_the_image_the_command_line_is_wrong(tmp_path: Path) -> None:
    result = warden("deploy", "k8s", "--out", tmp_path / "k8s")
    assert result.exit_code == 2
    assert "--image" in result.stderr


def test_the_docs_say_the_standard_image_is_cpu_only_which_its_lock_confirms() -> None:
    section = " ".join(kubernetes_section().split())
    lock = (DOCS.parents[1] / "requirements" / "runtime.txt").read_text(encoding="utf-8")
    assert re.search(r"^onnxruntime==", lock, flags=re.MULTILINE)
    assert "onnxruntime-gpu" not in lock
    assert "The standard image (`deploy/Dockerfile`) is CPU-only" in section
    assert "`onnxruntime-gpu`" in section
