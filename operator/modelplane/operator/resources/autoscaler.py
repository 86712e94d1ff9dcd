"""The autoscaler per spec.autoscaling.provider: an autoscaling/v2 HPA or a KEDA ScaledObject.

Both scale the Deployment on `modelplane_requests_in_flight` per replica; the operator then
never sets the Deployment's replicas itself (it would fight the autoscaler).
"""

from __future__ import annotations

from typing import Any

from modelplane.contract import IN_FLIGHT_METRIC
from modelplane.operator.resources import leaderworkerset as lws
from modelplane.operator.resources.endpoint_picker import wake_query
from modelplane.operator.resources.meta import Owner, child
from modelplane.operator.spec import AutoscalingSpec, ModelDeploymentSpec

# GPU replicas take minutes to start: scale up on a short window, down only after a calm spell.
HPA_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
    },
}


def _target(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, str]:
    """The serving workload; a LeaderWorkerSet scales whole groups (its scale subresource)."""
    if spec.multi_node:
        return {"apiVersion": lws.API_VERSION, "kind": lws.KIND, "name": owner.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.name}


def build_hpa(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    auto = _autoscaling(spec)
    return child(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        owner.name,
        owner,
        "autoscaler",
        "spec",
        {
            "scaleTargetRef": _target(owner, spec),
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": IN_FLIGHT_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(auto.target_in_flight_requests),
                        },
                    },
                }
            ],
            "behavior": HPA_BEHAVIOR,
        },
    )


def keda_query(owner: Owner, spec: ModelDeploymentSpec | None = None) -> str:
    """In-flight requests summed over the serving pods (0 when none are running).

    Deployment pods are `<name>-<hash>-<suffix>`; LeaderWorkerSet leaders are `<name>-<group>`
    (workers, `<name>-<group>-<index>`, serve no HTTP).
    """
    pods = (
        f"{owner.name}-[0-9]+"
        if spec is not None and spec.multi_node
        else f"{owner.name}-[a-z0-9]+-[a-z0-9]+"
    )
    selector = f'namespace="{owner.namespace}",pod=~"{pods}"'
    return f"sum({IN_FLIGHT_METRIC}{{{selector}}}) or vector(0)"


def build_scaled_object(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    auto = _autoscaling(spec)
    assert auto.prometheus_address is not None
    return child(
        "keda.sh/v1alpha1",
        "ScaledObject",
        owner.name,
        owner,
        "autoscaler",
        "spec",
        {
            "scaleTargetRef": _target(owner, spec),
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "pollingInterval": 15,
            # Scaling to zero unloads the model: wait 5 minutes of silence first.
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": auto.prometheus_address,
                        "query": keda_query(owner, spec),
                        "threshold": str(auto.target_in_flight_requests),
                        "activationThreshold": "0",
                    },
                },
                *routing_triggers(owner, spec),
            ],
        },
    )


def routing_triggers(owner: Owner, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """With routing, the endpoint picker's held and running requests: at zero pods nothing else
    reports load, and the picker holds the first request until a pod is ready (scale from zero).
    """
    auto = _autoscaling(spec)
    if spec.routing is None:
        return []
    return [
        {
            "type": "prometheus",
            "name": "endpoint-picker",
            "metadata": {
                "serverAddress": str(auto.prometheus_address),
                "query": wake_query(owner),
                "threshold": str(auto.target_in_flight_requests),
                "activationThreshold": "0",
            },
        }
    ]


def _autoscaling(spec: ModelDeploymentSpec) -> AutoscalingSpec:
    if spec.autoscaling is None:
        raise ValueError("spec.autoscaling is not set")
    return spec.autoscaling
