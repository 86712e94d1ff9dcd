"""Routing children against their projects' own CRD schemas (vendored under schemas/), CEL
rules included, and the endpoint picker's core kinds against Kubernetes' OpenAPI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelplane.operator.resources import Owner, plan_children
from modelplane.operator.resources.httproute import MAX_RULES
from modelplane.operator.spec import parse_spec
from tests import crd_checks

SCHEMAS = Path(__file__).parent / "schemas"
OWNER = Owner(name="qwen3-8b", namespace="ml", uid="3f1c2a9e-0000-4000-8000-000000000001")
GATEWAY = {"name": "inference-gateway", "namespace": "gateway-system"}
K8S_VERSIONS = ["1.31", kubernetes_validate.utils.latest_version()]


def vendored(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load((SCHEMAS / name).read_text())["openAPIV3Schema"]
    return schema


POOL_SCHEMA = vendored("inference.networking.k8s.io_inferencepools.yaml")
ROUTE_SCHEMA = vendored("gateway.networking.k8s.io_httproutes.yaml")


def check(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    """What the API server does: default, validate the structure, then evaluate the CEL rules."""
    defaulted = crd_checks.apply_defaults(schema, copy.deepcopy(obj))
    jsonschema.Draft4Validator(crd_checks.strict(schema)).validate(defaulted)
    assert crd_checks.cel_failures(schema, defaulted) == []


def routed(**fields: Any) -> list[dict[str, Any]]:
    spec = {"model": {"uri": "hf://Qwen/Qwen3-8B"}, "routing": {"gatewayRef": GATEWAY}, **fields}
    plan = plan_children(
        OWNER, parse_spec(spec), default_image="img:1", service_monitor_available=True
    )
    return plan.apply


def of_kind(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == kind]


ADAPTERS = [{"name": f"lora-{i}", "uri": f"hf://org/lora-{i}"} for i in range(64)]
VARIANTS = {
    "base": {},
    "adapters-and-listener": {
        "adapters": ADAPTERS[:3],
        "routing": {"gatewayRef": {**GATEWAY, "sectionName": "http"}, "requestTimeout": "1h30m"},
    },
    "64-adapters": {"adapters": ADAPTERS},
    "ha-picker": {"routing": {"gatewayRef": GATEWAY, "endpointPicker": {"replicas": 3}}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inference_pool_validates_against_the_upstream_crd(variant: str) -> None:
    (pool,) = of_kind(routed(**VARIANTS[variant]), "InferencePool")
    check(POOL_SCHEMA, pool)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_http_route_validates_against_the_gateway_api_crd(variant: str) -> None:
    (route,) = of_kind(routed(**VARIANTS[variant]), "HTTPRoute")
    check(ROUTE_SCHEMA, route)
    assert len(route["spec"]["rules"]) <= MAX_RULES


def test_the_schemas_catch_what_the_builders_must_not_do() -> None:
    """The vendored schemas are live: a wrong field or a broken CEL rule fails them."""
    (pool,) = of_kind(routed(), "InferencePool")
    broken = copy.deepcopy(pool)
    broken["spec"]["targetPorts"] = [{"number": 8000}, {"number": 8000}]
    defaulted = crd_checks.apply_defaults(POOL_SCHEMA, broken)
    assert "port number must be unique" in crd_checks.cel_failures(POOL_SCHEMA, defaulted)
    broken = copy.deepcopy(pool)
    broken["spec"]["endpointPickerRef"]["failureMode"] = "Closed"
    with pytest.raises(jsonschema.ValidationError):
        check(POOL_SCHEMA, broken)
    (route,) = of_kind(routed(), "HTTPRoute")
    broken = copy.deepcopy(route)
    broken["spec"]["rules"] *= MAX_RULES + 1
    with pytest.raises(jsonschema.ValidationError):
        check(ROUTE_SCHEMA, broken)


def test_a_pool_status_as_a_gateway_writes_it_is_valid() -> None:
    """The status the integration tests write into the fake API is one a gateway could write."""
    (pool,) = of_kind(routed(), "InferencePool")
    pool["status"] = {
        "parents": [
            {
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY},
                "controllerName": "example.net/gateway-controller",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "",
                        "lastTransitionTime": "2026-11-29T12:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
            }
        ]
    }
    check(POOL_SCHEMA, pool)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_endpoint_picker_core_objects_validate_against_the_kubernetes_schema(version: str) -> None:
    children = routed(**VARIANTS["ha-picker"]) + routed()
    core = [c for c in children if c["kind"] not in ("InferencePool", "HTTPRoute")]
    kinds = {c["kind"] for c in core}
    assert {"ServiceAccount", "RoleBinding", "ConfigMap", "Service", "Deployment"} <= kinds
    for child in core:
        kubernetes_validate.validate(child, version, strict=True)
