"""Which routing children a spec wants (InferencePool, endpoint picker, HTTPRoute) or must drop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelplane.operator.resources import endpoint_picker as epp
from modelplane.operator.resources.httproute import build_http_route
from modelplane.operator.resources.inferencepool import API_VERSION as POOL_API_VERSION
from modelplane.operator.resources.inferencepool import KIND as POOL_KIND
from modelplane.operator.resources.inferencepool import build_inference_pool
from modelplane.operator.resources.meta import Owner
from modelplane.operator.routing import RoutingDefaults, resolve_gateway
from modelplane.operator.spec import ModelDeploymentSpec

RefTuple = tuple[str, str, str]  # (apiVersion, kind, name)


@dataclass(frozen=True)
class RoutingPlan:
    """The operator's routing defaults and what the cluster offers, for `plan_children`.

    `crds_available`: the InferencePool and HTTPRoute CRDs exist (else nothing routed is made).
    `prune`: routing children may exist and are removed when `spec.routing` is not set (the
    handler passes False when the picker's ServiceAccount is gone, saving the calls).
    """

    defaults: RoutingDefaults = field(default_factory=RoutingDefaults)
    crds_available: bool = True
    prune: bool = True


def routing_refs(owner: Owner) -> list[RefTuple]:
    """Every child routing may have made, in removal order: the route first, the picker's
    ServiceAccount last (the handler probes it to know whether anything is left to prune)."""
    name = epp.picker_name(owner)
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        ("gateway.networking.k8s.io/v1", "HTTPRoute", owner.name),
        (POOL_API_VERSION, POOL_KIND, owner.name),
        ("apps/v1", "Deployment", name),
        ("v1", "Service", name),
        ("v1", "ConfigMap", name),
        ("monitoring.coreos.com/v1", "ServiceMonitor", name),
        (rbac, "RoleBinding", name + epp.LEADER_ELECTION_SUFFIX),
        (rbac, "RoleBinding", name),
        ("v1", "ServiceAccount", name),
    ]


def plan_routing(
    owner: Owner, spec: ModelDeploymentSpec, routing: RoutingPlan, service_monitor_available: bool
) -> tuple[list[dict[str, Any]], list[RefTuple]]:
    """(children to apply, refs to delete). Raises SpecError when no gateway is known."""
    if spec.routing is None:
        return [], routing_refs(owner) if routing.prune else []
    gateway = resolve_gateway(spec, routing.defaults, owner.namespace)
    assert gateway is not None
    if not routing.crds_available:
        return [], []
    apply = epp.build_endpoint_picker(
        owner,
        spec,
        image=routing.defaults.endpoint_picker_image,
        cluster_role=routing.defaults.endpoint_picker_role,
    )
    delete: list[RefTuple] = []
    if spec.routing.endpoint_picker.replicas == 1:
        name = epp.picker_name(owner) + epp.LEADER_ELECTION_SUFFIX
        delete.append(("rbac.authorization.k8s.io/v1", "RoleBinding", name))
    if spec.monitoring.service_monitor.enabled and service_monitor_available:
        apply.append(epp.build_picker_service_monitor(owner, spec))
    apply += [build_inference_pool(owner, spec), build_http_route(owner, spec, gateway)]
    return apply, delete
