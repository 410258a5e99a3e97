"""``warden deploy k8s``: render plain Kubernetes YAML for Warden past one machine.

Writes one file per object (one per tenant for a dedicated tenant's namespace) into ``--out``, for
``kubectl apply -f DIR``; see :mod:`warden.deploy.render` for the layout. Nothing is read from the data directory
or the environment, and no secret is written: the operator creates the Secret the Deployments reference.

Exit status: ``0`` when written; ``2`` for a wrong command line or an ``invalid_argument`` (a name that is not a
DNS-1123 label, a bad quantity, a quota below what a tenant needs, ``--tenant`` without ``--model-store-nfs``,
``--gpu`` without ``--gpu-image``); ``1`` for ``image_refused`` (``--image`` or ``--gpu-image`` not pinned by
digest), ``conflict`` (a non-empty ``--out`` without ``--force``) and ``io_error``. Each failure is one line on
stderr, ``warden: error: <code>: <message>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from warden.cli.common import IO_ERROR, AsJson, console, emit_json, fail
from warden.deploy import (
    OPTIONAL_SECRET_KEYS,
    SECRET_KEYS,
    Autoscaler,
    KubernetesOptions,
    ManifestFile,
    parse_egress,
    parse_gpu,
    parse_nfs,
    parse_quota,
    render,
    tenants_from_options,
    write,
)
from warden.errors import WardenError
from warden.jobs.images import parse_image

deploy_app = typer.Typer(help="Render deployment files for Warden past one machine.", no_args_is_help=True)

_Repeated = list[str] | None


@deploy_app.command("k8s")
def k8s(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the YAML files into.", show_default=False)],
    image: Annotated[
        str, typer.Option("--image", help="Warden's image, pinned: NAME[:TAG]@sha256:DIGEST.", show_default=False)
    ],
    replicas: Annotated[
        int, typer.Option("--replicas", help="Fewest replicas of the shared Deployment: the autoscaler's minimum.")
    ] = 2,
    max_replicas: Annotated[int, typer.Option("--max-replicas", help="Most replicas the autoscaler starts.")] = 10,
    autoscaler: Annotated[
        Autoscaler,
        typer.Option(
            "--autoscaler", help="hpa: a HorizontalPodAutoscaler (custom-metrics adapter); keda: a ScaledObject."
        ),
    ] = Autoscaler.HPA,
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the shared Deployment.")] = "warden",
    cpu: Annotated[str, typer.Option("--cpu", help="CPU of each replica (request = limit); sets workers.")] = "2",
    memory: Annotated[str, typer.Option("--memory", help="Memory of each replica (request = limit).")] = "4Gi",
    tenant: Annotated[
        _Repeated,
        typer.Option("--tenant", metavar="NAME", help="A tenant with dedicated isolation: its own namespace (repeat)."),
    ] = None,
    tenant_quota: Annotated[
        _Repeated,
        typer.Option(
            "--tenant-quota",
            metavar="NAME=cpu:N,memory:Q,pods:N,storage:Q",
            help="Override parts of a dedicated tenant's ResourceQuota (repeat).",
        ),
    ] = None,
    tenant_replicas: Annotated[
        int, typer.Option("--tenant-replicas", help="Replicas of each dedicated tenant's Deployment.")
    ] = 1,
    gpu: Annotated[
        _Repeated,
        typer.Option(
            "--gpu",
            metavar="NAME=COUNT|NAME=MIG_PROFILE:COUNT",
            help="GPUs (or MIG slices, e.g. 1g.10gb:1) per replica of a dedicated tenant (repeat); needs --gpu-image.",
        ),
    ] = None,
    gpu_image: Annotated[
        str | None,
        typer.Option(
            "--gpu-image",
            help="Image of the tenants with --gpu, built with onnxruntime-gpu, pinned: NAME[:TAG]@sha256:DIGEST.",
            show_default=False,
        ),
    ] = None,
    gateway_namespace: Annotated[
        str, typer.Option("--gateway-namespace", help="The only namespace whose pods may send requests.")
    ] = "ingress-nginx",
    monitoring_namespace: Annotated[
        str, typer.Option("--monitoring-namespace", help="Namespace of the Prometheus that scrapes /metrics.")
    ] = "monitoring",
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres", metavar="CIDR|namespace=NAME", help="Where PostgreSQL is (egress); default --namespace."
        ),
    ] = None,
    postgres_port: Annotated[int, typer.Option("--postgres-port", help="PostgreSQL's port.")] = 5432,
    redis: Annotated[
        str | None,
        typer.Option("--redis", metavar="CIDR|namespace=NAME", help="Where Redis is (egress); default --namespace."),
    ] = None,
    redis_port: Annotated[int, typer.Option("--redis-port", help="Redis's port.")] = 6379,
    prometheus_url: Annotated[
        str, typer.Option("--prometheus-url", help="Prometheus that KEDA queries for the queue depth.")
    ] = "http://prometheus-operated.monitoring.svc:9090",
    queue_target: Annotated[
        int, typer.Option("--queue-target", help="Requests waiting per replica the autoscalers aim for.")
    ] = 4,
    model_store_size: Annotated[
        str, typer.Option("--model-store-size", help="Size of the shared model-store claim.")
    ] = "20Gi",
    storage_class: Annotated[
        str | None,
        typer.Option(
            "--storage-class",
            help="Storage class (ReadWriteMany) of a provisioned model store, without --model-store-nfs.",
        ),
    ] = None,
    model_store_nfs: Annotated[
        str | None,
        typer.Option(
            "--model-store-nfs",
            metavar="SERVER:/PATH",
            help="NFS export holding the model store; every namespace's claim is bound to it. Needed with --tenant.",
        ),
    ] = None,
    secret_name: Annotated[
        str, typer.Option("--secret-name", help="The Secret (created by you) holding the server secret and URLs.")
    ] = "warden",  # noqa: S107 - the name of a Secret, not a secret
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out, overwriting.")] = False,
    as_json: AsJson = False,
) -> None:
    """Write Namespace, Deployment, Service, PDB, NetworkPolicy, HPA or KEDA ScaledObject, ConfigMap, model store
    and per-tenant namespaces as plain YAML into --out."""
    try:
        options = KubernetesOptions(
            image=parse_image(image),
            namespace=namespace,
            replicas=replicas,
            max_replicas=max_replicas,
            cpu=cpu,
            memory=memory,
            tenants=tenants_from_options(
                tenant or [], [parse_gpu(g) for g in gpu or []], [parse_quota(q) for q in tenant_quota or []]
            ),
            tenant_replicas=tenant_replicas,
            gateway_namespace=gateway_namespace,
            monitoring_namespace=monitoring_namespace,
            postgres=None if postgres is None else parse_egress("--postgres", postgres, postgres_port),
            redis=None if redis is None else parse_egress("--redis", redis, redis_port),
            prometheus_url=prometheus_url,
            queue_target=queue_target,
            model_store_size=model_store_size,
            storage_class=storage_class,
            model_store_nfs=None if model_store_nfs is None else parse_nfs(model_store_nfs),
            gpu_image=None if gpu_image is None else parse_image(gpu_image),
            autoscaler=autoscaler,
            secret_name=secret_name,
        )
        files = render(options)
        write(files, out, force=force)
    except WardenError as exc:
        fail(exc.code, exc.message)
    except OSError as exc:
        fail(IO_ERROR, str(exc))
    namespaces = [options.namespace, *(t.namespace for t in options.tenants)]
    if as_json:
        emit_json(
            {
                "out": str(out),
                "files": [{"path": file.path, "resources": file.resources} for file in files],
                "secret": {
                    "name": options.secret_name,
                    "keys": list(SECRET_KEYS),
                    "optional_keys": list(OPTIONAL_SECRET_KEYS),
                    "namespaces": namespaces,
                },
            }
        )
        return
    _print_summary(out, files, options.secret_name, namespaces)


def _print_summary(out: Path, files: list[ManifestFile], secret: str, namespaces: list[str]) -> None:
    show = console()
    for file in files:
        show.print(f"{out / file.path}  {', '.join(file.resources)}", markup=False)
    lines = [
        f"\nApply: kubectl apply -f {out}",
        f"Then create the Secret '{secret}' in {', '.join(namespaces)}; the pods wait for it. Put its values in a",
        f"file only you can read (umask 077), one KEY=VALUE line each for {', '.join(SECRET_KEYS)}",
        f"(and, after a rotation, {', '.join(OPTIONAL_SECRET_KEYS)}), never on a command line:",
        f"  kubectl create secret generic {secret} -n NAMESPACE --from-env-file=FILE",
    ]
    for line in lines:
        show.print(line, markup=False)
