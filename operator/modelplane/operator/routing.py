"""Routing through a Gateway: the operator's defaults, the resolved gateway, and `Routed` status.

A ModelDeployment with `spec.routing` is served behind a Gateway by the Gateway API Inference
Extension: an InferencePool of its pods, an endpoint picker (llm-d router EPP) choosing a pod per
request, and an HTTPRoute matching the model name that body-based routing copies into a header.
Pure functions: the handlers read the live objects and pass them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelplane.operator.spec import GatewayRef, ModelDeploymentSpec, SpecError

# The endpoint picker the operator pins (the llm-d router release KServe v0.16 pins too).
DEFAULT_ENDPOINT_PICKER_IMAGE = "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"
# The ClusterRole the chart ships with the endpoint picker's read rules; the operator binds it in
# each model's namespace with a RoleBinding (it holds `bind` on it, not the rules themselves).
DEFAULT_ENDPOINT_PICKER_ROLE = "modelplane-endpoint-picker"
INFERENCE_POOL_CRD = "inferencepools.inference.networking.k8s.io"
HTTP_ROUTE_CRD = "httproutes.gateway.networking.k8s.io"
ROUTED = "Routed"


@dataclass(frozen=True)
class RoutingDefaults:
    """What the operator fills in for a `spec.routing` that leaves it out (from its flags)."""

    gateway: GatewayRef | None = None
    endpoint_picker_image: str = DEFAULT_ENDPOINT_PICKER_IMAGE
    endpoint_picker_role: str = DEFAULT_ENDPOINT_PICKER_ROLE


def parse_gateway(text: str) -> GatewayRef:
    """`--default-gateway namespace/name` as a GatewayRef; ValueError with the expected form."""
    namespace, _, name = text.strip().partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"expected namespace/name, got {text!r}")
    return GatewayRef.model_validate({"namespace": namespace, "name": name})


def resolve_gateway(
    spec: ModelDeploymentSpec, defaults: RoutingDefaults, namespace: str
) -> GatewayRef | None:
    """The gateway a routed spec attaches to (namespace filled in); None without routing.

    Raises SpecError naming `spec.routing.gatewayRef` when neither the spec nor the operator
    names one.
    """
    if spec.routing is None:
        return None
    ref = spec.routing.gateway_ref or defaults.gateway
    if ref is None:
        raise SpecError(
            "spec.routing.gatewayRef",
            "is required: the operator has no --default-gateway to fall back on",
        )
    if ref.namespace is None:
        ref = ref.model_copy(update={"namespace": namespace})
    return ref


def gateway_text(ref: GatewayRef) -> str:
    section = f" (listener {ref.section_name})" if ref.section_name else ""
    return f"{ref.namespace}/{ref.name}{section}"


def _condition(conditions: Any, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def _parent_status(pool: Mapping[str, Any], gateway: GatewayRef) -> Mapping[str, Any] | None:
    """The pool's status entry written by this gateway's controller, if any."""
    pool_namespace = (pool.get("metadata") or {}).get("namespace")
    for parent in (pool.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if (ref.get("kind") or "Gateway") != "Gateway" or ref.get("name") != gateway.name:
            continue
        if (ref.get("namespace") or pool_namespace) == gateway.namespace:
            return parent
    return None


def routed_condition(
    *,
    gateway: GatewayRef,
    pool: Mapping[str, Any] | None,
    endpoint_picker: Mapping[str, Any] | None,
    crds_missing: list[str],
) -> tuple[bool, str, str]:
    """(status, reason, message) of `Routed`: the gateway accepted the pool and the EPP is up."""
    where = f"gateway {gateway_text(gateway)}"
    if crds_missing:
        return (
            False,
            "RoutingCRDsMissing",
            f"install the CRDs {', '.join(crds_missing)} (Gateway API, Inference Extension)",
        )
    if pool is None:
        return False, "InferencePoolMissing", "the InferencePool does not exist yet"
    parent = _parent_status(pool, gateway)
    accepted = _condition((parent or {}).get("conditions"), "Accepted")
    if accepted is None:
        return False, "Pending", f"waiting for {where} to accept the InferencePool"
    if accepted.get("status") != "True":
        reason = accepted.get("reason") or "NotAccepted"
        return False, f"Pool{reason}", f"{where}: {accepted.get('message') or reason}"
    resolved = _condition((parent or {}).get("conditions"), "ResolvedRefs")
    if resolved is not None and resolved.get("status") == "False":
        reason = resolved.get("reason") or "RefsNotResolved"
        return False, str(reason), f"{where}: {resolved.get('message') or reason}"
    status = (endpoint_picker or {}).get("status") or {}
    available = int(status.get("availableReplicas") or 0)
    if endpoint_picker is None or available < 1:
        return (
            False,
            "EndpointPickerUnavailable",
            f"{where} accepted the InferencePool; the endpoint picker has no available replica",
        )
    return True, "Routed", f"served through {where}"


def gateway_endpoint(gateway: Mapping[str, Any] | None, ref: GatewayRef) -> str | None:
    """The OpenAI base URL on the Gateway's first address and the chosen listener, if known."""
    if not gateway:
        return None
    addresses = (gateway.get("status") or {}).get("addresses") or []
    if not addresses or not addresses[0].get("value"):
        return None
    listeners = (gateway.get("spec") or {}).get("listeners") or []
    listener = next(
        (
            item
            for item in listeners
            if (ref.section_name is None and item.get("protocol") in ("HTTP", "HTTPS"))
            or item.get("name") == ref.section_name
        ),
        None,
    )
    scheme = "https" if (listener or {}).get("protocol") == "HTTPS" else "http"
    port = int((listener or {}).get("port") or (443 if scheme == "https" else 80))
    host = str(addresses[0]["value"])
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{host}{'' if port == default_port else f':{port}'}/v1"
