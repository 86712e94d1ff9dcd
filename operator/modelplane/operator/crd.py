"""Generate the ModelDeployment CRD from the typed spec: `python -m modelplane.operator.crd`.

pydantic's JSON schema becomes a structural OpenAPI v3 schema (refs inlined, nullables folded,
int-or-string quantities, free-form fragments marked preserve-unknown-fields), and the
cross-field rules of `spec.CROSS_FIELD_RULES` become CEL `x-kubernetes-validations`.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from modelplane.operator import spec as specmod
from modelplane.operator.status import ModelDeploymentStatus

JSON = dict[str, Any]

# Bounds that keep CEL cost estimation (and etcd objects) small.
MAX_ITEMS = {
    "extraArgs": 128,
    "env": 128,
    "tolerations": 64,
    "adapters": 64,
    "conditions": 16,
}
# Lists whose items are unique by a key: the API server enforces uniqueness itself.
LIST_MAP_KEYS = {"adapters": ["name"], "env": ["name"], "conditions": ["type"]}


def _structural(node: JSON, defs: JSON, name: str = "") -> JSON:
    """Turn one pydantic JSON-schema node into a structural-schema node."""
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**copy.deepcopy(target), **node}
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        types = sorted(b.get("type", "") for b in branches)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(branches) == 1:
            branch = branches[0]
            if "$ref" in branch:
                branch = _structural(branch, defs, name)
            node = {**branch, **node}
        else:  # pragma: no cover - the spec has no other unions
            raise ValueError(f"unsupported union in {name}: {branches}")
    node.pop("title", None)
    if node.get("default", 0) is None:
        node.pop("default")
    if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(
        node.get("exclusiveMinimum"), bool
    ):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True

    if node.get("type") == "object":
        extra = node.pop("additionalProperties", None)
        if "properties" in node:
            required = set(node.get("required", []))
            props: JSON = {}
            for key, child in node["properties"].items():
                converted = _structural(child, defs, key)
                if (
                    key not in required
                    and "default" not in converted
                    and converted.get("type") == "object"
                    and "properties" in converted
                    and not _nullable(child)
                ):
                    converted["default"] = {}  # so nested defaults apply to an omitted section
                props[key] = converted
            node["properties"] = props
        elif extra is True or extra == {}:
            node["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            node["additionalProperties"] = _structural(extra, defs, name)
    elif node.get("type") == "array":
        node["items"] = _structural(node.get("items", {}), defs, name)
        if name in MAX_ITEMS:
            node["maxItems"] = MAX_ITEMS[name]
        if name in LIST_MAP_KEYS:
            node["x-kubernetes-list-type"] = "map"
            node["x-kubernetes-list-map-keys"] = LIST_MAP_KEYS[name]
    return node


def _nullable(node: JSON) -> bool:
    return any(b.get("type") == "null" for b in node.get("anyOf", []))


def structural_schema(model: Any) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def _node_at(schema: JSON, dotted: str) -> JSON:
    node = schema
    for part in filter(None, dotted.split(".")):
        node = node["properties"][part]
        if node.get("type") == "array":
            node = node["items"]
    return node


def spec_schema() -> JSON:
    schema = structural_schema(specmod.ModelDeploymentSpec)
    schema.pop("required", None)
    schema["required"] = ["model"]
    for rule in specmod.CROSS_FIELD_RULES:
        if rule.cel is None:
            continue
        target = _node_at(schema, rule.scope)
        relative = rule.field.removeprefix("spec").removeprefix(
            "." + rule.scope if rule.scope else ""
        )
        entry: JSON = {"rule": rule.cel, "message": f"{rule.field} {rule.message}"}
        if relative.startswith("."):
            entry["fieldPath"] = relative
        target.setdefault("x-kubernetes-validations", []).append(entry)
    return schema


def build_crd() -> JSON:
    """The whole CustomResourceDefinition as a dict."""
    status = structural_schema(ModelDeploymentStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{specmod.PLURAL}.{specmod.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "modelplane",
                "app.kubernetes.io/component": "crd",
            },
        },
        "spec": {
            "group": specmod.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": specmod.KIND,
                "listKind": f"{specmod.KIND}List",
                "plural": specmod.PLURAL,
                "singular": specmod.SINGULAR,
                "shortNames": specmod.SHORT_NAMES,
                "categories": ["modelplane"],
            },
            "versions": [
                {
                    "name": specmod.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri"},
                        {
                            "name": "TP",
                            "type": "integer",
                            "jsonPath": ".spec.engine.tensorParallelSize",
                        },
                        {
                            "name": "Quantization",
                            "type": "string",
                            "jsonPath": ".spec.engine.quantization",
                        },
                        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Weights",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="WeightsCached")].reason',
                        },
                        {
                            "name": "GPUFit",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="GPUFit")].status',
                        },
                        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": (
                                "ModelDeployment serves one open model behind an OpenAI-compatible API: "
                                "the operator creates its Deployment, Service and autoscaler."
                            ),
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status,
                            },
                            "x-kubernetes-validations": [
                                {
                                    "rule": "self.metadata.name.size() <= 63 && "
                                    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                                    "message": "metadata.name must be a DNS-1035 label (it names the Service)",
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated by `python -m modelplane.operator.crd` from modelplane/operator/spec.py."
        " Do not edit by hand.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
