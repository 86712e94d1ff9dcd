"""The HTTPRoute `<name>` (gateway.networking.k8s.io/v1): the model names to this InferencePool.

Body-based routing (the gateway's BBR extension) copies a request's `model` into the
`X-Gateway-Model-Name` header; one rule per served name (the base model and each LoRA adapter)
matches it exactly and sends the request to the pool, whose picker then chooses the pod.
"""

from __future__ import annotations

from typing import Any

from modelplane.operator.resources.inferencepool import API_VERSION as POOL_API_VERSION
from modelplane.operator.resources.inferencepool import KIND as POOL_KIND
from modelplane.operator.resources.meta import Owner, child
from modelplane.operator.spec import GatewayRef, ModelDeploymentSpec, served_model_name

MODEL_HEADER = "X-Gateway-Model-Name"
# Gateway API (standard channel) allows 16 rules per route and 128 matches across them.
MAX_RULES = 16


def routed_model_names(owner: Owner, spec: ModelDeploymentSpec) -> list[str]:
    """The names clients send as `model` to reach this deployment: base model, then adapters."""
    return [served_model_name(spec, owner.name), *(a.name for a in spec.adapters)]


def _groups(names: list[str]) -> list[list[str]]:
    """One rule per name; past 16 names (up to 64 adapters) the names share 16 rules evenly."""
    per_rule = -(-len(names) // MAX_RULES)  # ceil
    return [names[i : i + per_rule] for i in range(0, len(names), per_rule)]


def build_http_route(
    owner: Owner, spec: ModelDeploymentSpec, gateway: GatewayRef
) -> dict[str, Any]:
    assert spec.routing is not None
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway.name,
        "namespace": gateway.namespace or owner.namespace,
    }
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name
    pool = {
        "group": POOL_API_VERSION.split("/")[0],
        "kind": POOL_KIND,
        "name": owner.name,
    }
    rules = [
        {
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": "/"},
                    "headers": [{"type": "Exact", "name": MODEL_HEADER, "value": name}],
                }
                for name in group
            ],
            "backendRefs": [dict(pool)],
            # Covers a cold start when the pool is at zero: the picker holds the request.
            "timeouts": {"request": spec.routing.request_timeout},
        }
        for group in _groups(routed_model_names(owner, spec))
    ]
    return child(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        owner.name,
        owner,
        "routing",
        "spec",
        {"parentRefs": [parent], "rules": rules},
    )
