"""What a kube-apiserver does to a custom object before storing it, as far as tests can do it.

Structural defaulting from the CRD schema, then the CEL rules (`x-kubernetes-validations`)
evaluated with a CEL library where their node exists. Shared by tests/operator (the CRD built
in code) and tests/chart (the CRD the chart ships).
"""

from __future__ import annotations

import copy
from typing import Any

import cel

from modelplane.operator import crd


def model_deployment_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the ModelDeployment CRD the operator generates from spec.py."""
    schema: dict[str, Any] = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def model_deployment(spec: dict[str, Any], name: str = "qwen3-8b") -> dict[str, Any]:
    """A ModelDeployment object around `spec` (a copy), as a client would send it."""
    return {
        "apiVersion": "modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": copy.deepcopy(spec),
    }


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """The API server's structural defaulting, which runs before validation and CEL."""
    if isinstance(value, dict) and "properties" in schema:
        for key, child in schema["properties"].items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = apply_defaults(child, value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def cel_failures(schema: dict[str, Any], value: Any) -> list[str]:
    """Messages of the rules `value` (already defaulted) breaks, in schema order."""
    failures: list[str] = []

    def visit(node: dict[str, Any], item: Any) -> None:
        for rule in node.get("x-kubernetes-validations", []):
            if not cel.evaluate(rule["rule"], {"self": item}):
                failures.append(rule["message"])
        if isinstance(item, dict):
            for key, child in (node.get("properties") or {}).items():
                if key in item:
                    visit(child, item[key])
        elif isinstance(item, list) and "items" in node:
            for element in item:
                visit(node["items"], element)

    visit(schema, value)
    return failures


def strict(schema: Any) -> Any:
    """Reject unknown fields, like the API server's strict field validation."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema
