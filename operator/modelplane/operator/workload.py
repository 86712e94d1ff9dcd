"""Which workload serves a ModelDeployment: a Deployment, or a LeaderWorkerSet when one replica
spans several nodes; and what the operator says when the LeaderWorkerSet API is missing."""

from __future__ import annotations

from typing import Any

from modelplane.operator.kube import Kube
from modelplane.operator.resources import leaderworkerset as lws
from modelplane.operator.spec import ModelDeploymentSpec

DEPLOYMENT = ("apps/v1", "Deployment")
LEADER_WORKER_SET = (lws.API_VERSION, lws.KIND)
WORKLOAD_KINDS = frozenset({DEPLOYMENT[1], LEADER_WORKER_SET[1]})
LWS_MISSING_REASON = "LeaderWorkerSetNotInstalled"
LWS_INSTALL_URL = "https://lws.sigs.k8s.io/docs/installation/"


def workload_kind(spec: ModelDeploymentSpec) -> str:
    return LEADER_WORKER_SET[1] if spec.multi_node else DEPLOYMENT[1]


def live_workload(
    kube: Kube, namespace: str, name: str, spec: ModelDeploymentSpec | None
) -> tuple[str, dict[str, Any] | None]:
    """(kind, live object or None). Without a valid spec: whichever exists (it serves the last
    valid spec), the Deployment first."""
    kinds = [LEADER_WORKER_SET if spec.multi_node else DEPLOYMENT] if spec else [DEPLOYMENT]
    if spec is None:
        kinds.append(LEADER_WORKER_SET)
    for api_version, kind in kinds:
        live = kube.get(api_version, kind, namespace, name)
        if live is not None:
            return kind, live
    return kinds[0][1], None


def lws_missing_message(spec: ModelDeploymentSpec) -> str:
    return (
        f"spec.resources.nodes {spec.resources.nodes} needs the LeaderWorkerSet API "
        f"({lws.API_VERSION}), which this cluster does not serve: install LWS ({LWS_INSTALL_URL}). "
        "Nothing was changed; the operator checks again with backoff."
    )
