"""Autoscaling on queue depth: the gauge ``warden_scheduler_queued{tenant=…}`` each replica exports at ``/metrics``.

- The HorizontalPodAutoscaler reads it as a *Pods* metric, ``warden_scheduler_queued`` averaged over the pods. It
  assumes a custom-metrics adapter such as prometheus-adapter exposing, per pod, the sum over tenants, for example
  with the rule ``seriesQuery: 'warden_scheduler_queued{namespace!="",pod!=""}'``, ``resources: {overrides:
  {namespace: {resource: namespace}, pod: {resource: pod}}}`` and ``metricsQuery:
  'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'``. Prometheus must attach ``namespace`` and ``pod``
  labels when it scrapes (the pod annotations ask for a scrape of port 8080).
- The KEDA ScaledObject runs ``sum(warden_scheduler_queued{namespace="…"})`` against ``--prometheus-url`` with the
  same target per replica (KEDA's ``AverageValue``) and the same scaling behaviour, through the HPA KEDA makes
  for it (``keda-hpa-warden``). If Prometheus loses the series, KEDA falls back to the minimum replicas rather
  than guessing.

Exactly one of the two is rendered (``--autoscaler``): two autoscalers on one Deployment fight over its replicas,
and KEDA refuses a ScaledObject whose Deployment another HPA already scales. Either one's minimum is the floor:
the Deployment itself names no ``replicas``. Only the shared Deployment is autoscaled; a dedicated tenant's runs
``--tenant-replicas`` within its quota.
"""

from __future__ import annotations

from typing import Any, Final

from warden.deploy.kubernetes import NAME, object_metadata
from warden.deploy.options import Autoscaler, KubernetesOptions

__all__ = ["QUEUE_METRIC", "autoscaler", "horizontal_pod_autoscaler", "scaled_object"]

QUEUE_METRIC: Final = "warden_scheduler_queued"


def _target_ref() -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}


def _behavior() -> dict[str, Any]:
    """Up fast (double every 30 s), down slowly (one pod a minute after five quiet minutes)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def autoscaler(options: KubernetesOptions) -> dict[str, Any]:
    """The one autoscaler ``--autoscaler`` names: the HorizontalPodAutoscaler or the KEDA ScaledObject."""
    if options.autoscaler is Autoscaler.KEDA:
        return scaled_object(options)
    return horizontal_pod_autoscaler(options)


def horizontal_pod_autoscaler(options: KubernetesOptions) -> dict[str, Any]:
    """Scale the shared Deployment on requests waiting per replica (a Pods metric; see the module docstring)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_metadata(NAME, options.namespace, options.namespace),
        "spec": {
            "scaleTargetRef": _target_ref(),
            "minReplicas": options.replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(options.queue_target)},
                    },
                }
            ],
            "behavior": _behavior(),
        },
    }


def scaled_object(options: KubernetesOptions) -> dict[str, Any]:
    """The KEDA alternative to the HPA: the same target and behaviour through KEDA's prometheus scaler."""
    query = f'sum({QUEUE_METRIC}{{namespace="{options.namespace}"}})'
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": object_metadata(NAME, options.namespace, options.namespace),
        "spec": {
            "scaleTargetRef": _target_ref(),
            "minReplicaCount": options.replicas,
            "maxReplicaCount": options.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "fallback": {"failureThreshold": 3, "replicas": options.replicas},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior()}},
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "queue-depth",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": options.prometheus_url,
                        "query": query,
                        "threshold": str(options.queue_target),
                        "ignoreNullValues": "false",
                    },
                }
            ],
        },
    }
