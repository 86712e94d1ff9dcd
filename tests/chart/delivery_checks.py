"""Shared pieces of the delivery tests: paths, helm runs, and the validators for rendered objects."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests import crd_checks

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelplane"
ROOT_CRD = REPO / "crds" / "modelplane.io_modeldeployments.yaml"
CHART_CRD = CHART / "crds" / "modelplane.io_modeldeployments.yaml"
EXAMPLES = REPO / "examples"
RELEASE = "mp"
RELEASE_NAMESPACE = "modelplane-system"
# The Kubernetes minor the helm/kubectl binaries target (kubectl 1.35).
KUBE_VERSION = "1.35.0"

Manifest = dict[str, Any]


def tools_bin() -> Path:
    cache = Path(os.environ.get("MODELPLANE_CACHE", Path.home() / ".cache" / "modelplane"))
    return cache / "bin"


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)


def parse_documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_yaml_documents(path: Path) -> list[Manifest]:
    return parse_documents(path.read_text())


def load_crd(path: Path = ROOT_CRD) -> Manifest:
    crd: Manifest = yaml.safe_load(path.read_text())
    return crd


def _strict_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (structural CRD schema) -> JSON Schema that rejects unknown fields.

    kubectl's default field validation (strict) rejects fields a structural schema does not
    declare; JSON Schema only does so with additionalProperties: false. Int-or-string and the
    OpenAPI 3.0 boolean exclusiveMinimum are translated too. CEL rules are left to parse_spec.
    """
    if isinstance(node, list):
        return [_strict_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if out.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if out.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


def modeldeployment_schema(crd: Manifest) -> Manifest:
    """The served version's openAPIV3Schema as strict JSON Schema."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    strict: Manifest = _strict_jsonschema(schema)
    return strict


def modeldeployment_validator(crd: Manifest) -> jsonschema.Draft202012Validator:
    schema = modeldeployment_schema(crd)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_kubernetes(obj: Manifest) -> None:
    """Validate a built-in Kubernetes object against the OpenAPI schema (unknown fields rejected)."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def by_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def cel_failures(crd: Manifest, obj: Manifest) -> list[str]:
    """Messages of the CRD's CEL rules (x-kubernetes-validations) that the defaulted object breaks."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema = version["schema"]["openAPIV3Schema"]
    return crd_checks.cel_failures(schema, crd_checks.apply_defaults(schema, copy.deepcopy(obj)))
