"""The `Routed` condition and `status.gatewayEndpoint`, read from the live routing objects.

The InferencePool's `status.parents` (written by the gateway's controller), the endpoint
picker's Deployment and, when the operator may read it, the Gateway's `status.addresses`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from modelplane.operator.kube import Kube, KubeError
from modelplane.operator.resources.endpoint_picker import picker_name
from modelplane.operator.resources.inferencepool import API_VERSION as POOL_API_VERSION
from modelplane.operator.resources.inferencepool import KIND as POOL_KIND
from modelplane.operator.resources.meta import Owner
from modelplane.operator.routing import (
    HTTP_ROUTE_CRD,
    INFERENCE_POOL_CRD,
    ROUTED,
    RoutingDefaults,
    gateway_endpoint,
    resolve_gateway,
    routed_condition,
)
from modelplane.operator.spec import ModelDeploymentSpec
from modelplane.operator.status import condition

log = logging.getLogger(__name__)


def routing_children_exist(kube: Kube, owner: Owner) -> bool:
    """Whether routing children may be left to prune: the picker's ServiceAccount exists.

    It is created first and pruned last (resources/routing.py), so it outlives a prune that
    failed halfway; one GET instead of a DELETE per routing child on every reconcile.
    """
    return kube.get("v1", "ServiceAccount", owner.namespace, picker_name(owner)) is not None


def missing_crds(kube: Kube) -> list[str]:
    return [crd for crd in (INFERENCE_POOL_CRD, HTTP_ROUTE_CRD) if not kube.crd_exists(crd)]


def _read_gateway(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Gateway, or None when absent or not readable (the operator may lack `get` on it)."""
    try:
        return kube.get("gateway.networking.k8s.io/v1", "Gateway", namespace, name)
    except KubeError as error:
        log.debug("Gateway %s/%s is not readable: %s", namespace, name, error)
        return None


def routing_status(
    kube: Kube,
    owner: Owner,
    spec: ModelDeploymentSpec | None,
    defaults: RoutingDefaults,
    previous: Mapping[str, Any],
    generation: int | None,
    now: str,
) -> tuple[dict[str, Any] | None, str | None]:
    """(the Routed condition or None, the gateway's base URL or None) for the status.

    An invalid spec changes no children, so what was reported before still holds.
    """
    old_conditions = list(previous.get("conditions") or [])
    if spec is None:
        old = next((c for c in old_conditions if c.get("type") == ROUTED), None)
        return old, previous.get("gatewayEndpoint")
    if spec.routing is None:
        return None, None
    gateway = resolve_gateway(spec, defaults, owner.namespace)
    assert gateway is not None and gateway.namespace is not None
    pool = kube.get(POOL_API_VERSION, POOL_KIND, owner.namespace, owner.name)
    missing = missing_crds(kube) if pool is None else []
    picker = kube.get("apps/v1", "Deployment", owner.namespace, picker_name(owner))
    ok, reason, message = routed_condition(
        gateway=gateway, pool=pool, endpoint_picker=picker, crds_missing=missing
    )
    routed = condition(old_conditions, ROUTED, ok, reason, message, generation, now)
    endpoint = None
    if ok:
        endpoint = gateway_endpoint(_read_gateway(kube, gateway.namespace, gateway.name), gateway)
    return routed, endpoint
