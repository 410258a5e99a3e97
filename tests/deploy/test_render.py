"""The files: one per object (one per tenant), in apply order, plain YAML, written only where nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from warden.deploy import (
    Autoscaler,
    KubernetesOptions,
    Tenant,
    parse_gpu,
    parse_nfs,
    render,
    tenants_from_options,
    write,
)
from warden.errors import Conflict
from warden.jobs.images import parse_image

IMAGE = parse_image("registry.example/warden@sha256:" + "12" * 32)
NFS = parse_nfs("nfs.example.internal:/srv/warden-models")
OPTIONS = KubernetesOptions(
    image=IMAGE,
    tenants=tenants_from_options(["acme", "beta"], [parse_gpu("acme=1g.10gb:1")], []),
    model_store_nfs=NFS,
    gpu_image=parse_image("registry.example/warden-gpu@sha256:" + "21" * 32),
)


def test_the_layout_applies_in_name_order() -> None:
    paths = [file.path for file in render(OPTIONS)]
    assert paths == [
        "00-namespace.yaml",
        "01-serviceaccount.yaml",
        "02-configmap.yaml",
        "03-model-store.yaml",
        "10-deployment.yaml",
        "11-service.yaml",
        "12-poddisruptionbudget.yaml",
        "13-networkpolicy.yaml",
        "20-horizontalpodautoscaler.yaml",
        "30-tenant-acme.yaml",
        "30-tenant-beta.yaml",
    ]
    assert paths == sorted(paths)  # kubectl apply -f DIR reads them in this order: the namespace first


@pytest.mark.parametrize(
    ("autoscaler", "path", "resource"),
    [
        (Autoscaler.HPA, "20-horizontalpodautoscaler.yaml", "HorizontalPodAutoscaler/warden/warden"),
        (Autoscaler.KEDA, "20-scaledobject.yaml", "ScaledObject/warden/warden"),
    ],
)
def test_the_chosen_autoscaler_alone_is_written_where_kubectl_apply_reads_it(
    autoscaler: Autoscaler, path: str, resource: str
) -> None:
    files = render(KubernetesOptions(image=IMAGE, autoscaler=autoscaler))
    scalers = [file for file in files if file.path.startswith("20-")]
    assert [(file.path, file.resources) for file in scalers] == [(path, [resource])]
    assert all("/" not in file.path for file in files)


def test_each_file_names_its_objects() -> None:
    files = {file.path: file for file in render(OPTIONS)}
    assert files["00-namespace.yaml"].resources == ["Namespace/warden"]
    assert files["03-model-store.yaml"].resources == [
        "PersistentVolume/warden-models-warden",
        "PersistentVolumeClaim/warden/warden-models",
    ]
    assert files["10-deployment.yaml"].resources == ["Deployment/warden/warden"]
    assert files["30-tenant-acme.yaml"].resources[:2] == ["Namespace/warden-acme", "ResourceQuota/warden-acme/warden"]
    assert "PersistentVolume/warden-models-warden-acme" in files["30-tenant-acme.yaml"].resources


def test_the_yaml_is_plain_no_anchors_no_tags_and_reads_back_to_the_objects() -> None:
    for file in render(OPTIONS):
        text = file.text()
        assert "&id" not in text
        assert "*id" not in text
        assert "!!" not in text
        assert text.startswith("# Rendered by `warden deploy k8s`")
        assert list(yaml.safe_load_all(text)) == list(file.objects)


def test_writing_creates_the_directory_and_every_file(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    written = write(render(OPTIONS), out)

    assert [path.relative_to(out).as_posix() for path in written] == [file.path for file in render(OPTIONS)]
    assert (out / "20-horizontalpodautoscaler.yaml").is_file()
    assert yaml.safe_load((out / "10-deployment.yaml").read_text())["kind"] == "Deployment"


def test_a_directory_that_holds_anything_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "30-tenant-gone.yaml").write_text("# from an earlier rendering\n")
    with pytest.raises(Conflict, match="not empty"):
        write(render(OPTIONS), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["30-tenant-gone.yaml"]

    write(render(OPTIONS), tmp_path, force=True)
    assert (tmp_path / "00-namespace.yaml").is_file()
    assert (tmp_path / "30-tenant-gone.yaml").read_text() == "# from an earlier rendering\n"


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "manifests"
    target.write_text("")
    with pytest.raises(Conflict, match="not a directory"):
        write(render(OPTIONS), target, force=True)


SECRETS = {
    "WARDEN_SECRET_KEY": "k3y-Wq8Zr0Tj5VbNc2Lm",
    "WARDEN_DATABASE_URL": "postgresql+psycopg://warden:Pg-Pa55w0rd-Xy7@db.internal:5432/warden",
    "WARDEN_REDIS_URL": "redis://:Rd-Pa55w0rd-Qz9@redis.internal:6379/0",
}


def test_no_secret_value_in_the_environment_reaches_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    options = KubernetesOptions(image=IMAGE, tenants=(Tenant("acme"),), model_store_nfs=NFS)
    write(render(options), tmp_path)

    texts = {path: path.read_text() for path in tmp_path.rglob("*.yaml")}
    assert len(texts) == len(render(options))
    needles = [*SECRETS.values(), "Pg-Pa55w0rd-Xy7", "Rd-Pa55w0rd-Qz9", "db.internal", "redis.internal"]
    for path, text in texts.items():
        for needle in needles:
            assert needle not in text, f"{needle!r} in {path}"
    assert os.environ["WARDEN_SECRET_KEY"] == SECRETS["WARDEN_SECRET_KEY"]  # the secrets were there to leak
