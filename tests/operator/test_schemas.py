"""Generated objects against the real schemas: Kubernetes OpenAPI (kubernetes-validate), KEDA's
ScaledObject CRD, and the ModelDeployment CRD itself (structure, defaults, CEL rules)."""

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelplane.operator import crd
from modelplane.operator.resources import Owner, plan_children
from modelplane.operator.spec import CROSS_FIELD_RULES, SpecError, parse_spec
from tests import crd_checks
from tests.crd_checks import apply_defaults, model_deployment, model_deployment_schema, strict

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "modelplane.io_modeldeployments.yaml"
KEDA_SCHEMA = Path(__file__).parent / "schemas" / "keda.sh_scaledobjects.yaml"
# The oldest Kubernetes we support (preStop `sleep` needs 1.30+; validated on 1.31) and the newest
# kubernetes-validate ships.
K8S_VERSIONS = ["1.31", kubernetes_validate.utils.latest_version()]
OWNER = Owner(name="qwen3-8b", namespace="ml", uid="3f1c2a9e-0000-4000-8000-000000000001")

EXAMPLES: dict[str, dict[str, Any]] = {
    "minimal": {"model": {"uri": "hf://Qwen/Qwen3-8B"}},
    "tp-pp-quantized-hpa": {
        "model": {
            "uri": "hf://Qwen/Qwen3-32B-AWQ",
            "hfTokenSecretRef": {"name": "hf", "key": "token"},
        },
        "engine": {
            "tensorParallelSize": 2,
            "pipelineParallelSize": 2,
            "quantization": "awq",
            "dtype": "half",
            "kvCacheDtype": "fp8",
            "maxModelLen": 16384,
            "gpuMemoryUtilization": 0.9,
            "maxNumSeqs": 128,
            "enablePrefixCaching": True,
            "extraArgs": ["--enforce-eager"],
            "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
        },
        "resources": {
            "gpu": {"count": 4, "product": "NVIDIA-A100-SXM4-80GB"},
            "requests": {"cpu": "8", "memory": "64Gi"},
            "limits": {"memory": "96Gi"},
        },
        "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetInFlightRequests": 32},
        "adapters": [{"name": "sql", "uri": "hf://org/sql-lora"}],
        "auth": {"apiKeySecretRef": {"name": "api-keys", "key": "keys"}},
        "rateLimit": {"requestsPerMinute": 600, "tokensPerMinute": 200000},
        "cache": {"size": "200Gi", "storageClassName": "fast-ssd"},
        "imagePullPolicy": "IfNotPresent",
        "nodeSelector": {"pool": "a100"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "inference",
        "podAnnotations": {"team": "ml"},
        "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    },
    "keda-scale-to-zero-pvc": {
        "model": {"uri": "pvc://weights/llama-3.1-8b", "servedModelName": "llama"},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 3,
            "provider": "keda",
            "prometheusAddress": "http://prometheus.monitoring.svc:9090",
        },
        "cache": {"persistentVolumeClaim": "hf-cache"},
        "routing": {
            "gatewayRef": {"name": "inference-gateway", "namespace": "gateway-system"},
            "requestTimeout": "15m",
            "endpointPicker": {"replicas": 2},
        },
        "adapters": [{"name": "sql-lora", "uri": "hf://org/sql-lora"}],
    },
    "s3-replicas": {"model": {"uri": "s3://models/qwen3-8b"}, "replicas": 3},
    "cpu-file": {"model": {"uri": "file:///models/smollm2"}, "resources": {"gpu": {"count": 0}}},
}


def all_children() -> list[dict[str, Any]]:
    children = []
    for spec in EXAMPLES.values():
        plan = plan_children(
            OWNER, parse_spec(spec), default_image="img:1", service_monitor_available=True
        )
        children += plan.create + plan.apply
    return children


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_builtin_child_validates_against_the_kubernetes_schema(version):
    custom = ("ScaledObject", "ServiceMonitor", "InferencePool", "HTTPRoute")
    builtin = [c for c in all_children() if c["kind"] not in custom]
    assert {c["kind"] for c in builtin} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "RoleBinding",
        "ConfigMap",
    }
    for child in builtin:
        kubernetes_validate.validate(child, version, strict=True)


def test_scaled_object_validates_against_the_keda_crd_schema():
    vendored = yaml.safe_load(KEDA_SCHEMA.read_text())
    schema = strict({**vendored["openAPIV3Schema"], "$defs": vendored["$defs"]})
    scaled = [c for c in all_children() if c["kind"] == "ScaledObject"]
    assert len(scaled) == 1
    assert len(scaled[0]["spec"]["triggers"]) == 2  # the pods and, routed, the endpoint picker
    jsonschema.Draft202012Validator(schema).validate(scaled[0])
    broken = copy.deepcopy(scaled[0])
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 16  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_crd_file_is_up_to_date():
    assert CRD_FILE.read_text() == crd.render(), (
        "crds/ is stale: run `make crds` (python -m modelplane.operator.crd > crds/...)"
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_crd_validates_against_the_kubernetes_schema(version):
    kubernetes_validate.validate(yaml.safe_load(CRD_FILE.read_text()), version, strict=True)


def test_crd_names_subresources_and_printer_columns():
    generated = crd.build_crd()
    assert generated["metadata"]["name"] == "modeldeployments.modelplane.io"
    names = generated["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelDeployment",
        "modeldeployments",
        ["md"],
    )
    assert generated["spec"]["scope"] == "Namespaced"
    version = generated["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == [
        "Model",
        "TP",
        "Quantization",
        "Ready",
        "Phase",
        "Weights",
        "GPUFit",
        "Endpoint",
        "Age",
    ]


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for key, child in (schema.get("properties") or {}).items():
        nodes += walk(child, f"{path}.{key}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def test_crd_schema_is_structural_with_descriptions():
    for path, node in walk(model_deployment_schema()):
        assert ("$ref" not in node and "anyOf" not in node) or node.get(
            "x-kubernetes-int-or-string"
        ), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if path.startswith(".spec.") and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description (kubectl explain)"


def test_crd_has_defaults_enums_and_bounds():
    spec = model_deployment_schema()["properties"]["spec"]["properties"]
    engine = spec["engine"]["properties"]
    assert engine["tensorParallelSize"]["default"] == 1
    assert engine["tensorParallelSize"]["minimum"] == 1
    assert engine["pipelineParallelSize"]["default"] == 1
    assert "compressed-tensors" in engine["quantization"]["enum"]
    assert engine["gpuMemoryUtilization"]["exclusiveMinimum"] is True
    assert spec["replicas"]["default"] == 1
    assert (
        spec["resources"]["properties"]["gpu"]["properties"]["resourceName"]["default"]
        == "nvidia.com/gpu"
    )
    assert spec["autoscaling"]["properties"]["provider"]["enum"] == ["hpa", "keda"]
    assert spec["resources"]["properties"]["requests"]["additionalProperties"][
        "x-kubernetes-int-or-string"
    ]


def openapi_validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas use draft-4 semantics (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(model_deployment_schema())


def cel_failures(obj: dict[str, Any]) -> list[str]:
    """The messages of the CEL rules the (defaulted) object breaks."""
    return crd_checks.cel_failures(model_deployment_schema(), obj)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_crd_schema_accepts_the_examples_after_defaulting(name):
    obj = apply_defaults(model_deployment_schema(), model_deployment(EXAMPLES[name]))
    openapi_validator().validate(obj)
    assert cel_failures(obj) == []
    assert obj["spec"]["engine"]["tensorParallelSize"] >= 1  # defaults landed


def repo_examples() -> list[Path]:
    return sorted(
        p for p in (REPO / "examples").rglob("*.yaml") if "ModelDeployment" in p.read_text()
    )


def test_repository_examples_pass_the_crd_schema_and_the_operator():
    checked = 0
    for path in repo_examples():
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "ModelDeployment":
                continue
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
            obj = apply_defaults(model_deployment_schema(), doc)
            openapi_validator().validate(obj)
            assert cel_failures(obj) == [], path
            parse_spec(obj)
            checked += 1
    assert checked >= 1, "examples/ holds no ModelDeployment"


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"uri": "hf://o/m"}, "engine": {"quantization": "int3"}},
        {"model": {"uri": "hf://o/m"}, "engine": {"tensorParallelSize": 0}},
        {"model": {"uri": "ftp://o/m"}},
        {"model": {"uri": "hf://o/m"}, "replicas": -1},
        {"engine": {}},
    ],
)
def test_crd_schema_rejects_bad_values(spec):
    with pytest.raises(jsonschema.ValidationError):
        openapi_validator().validate(
            apply_defaults(model_deployment_schema(), model_deployment(spec))
        )


CROSS_FIELD_CASES = [
    {
        "model": {"uri": "hf://o/m"},
        "engine": {"tensorParallelSize": 2},
        "resources": {"gpu": {"count": 1}},
    },
    {
        "model": {"uri": "hf://o/m"},
        "engine": {"tensorParallelSize": 2},
        "resources": {"gpu": {"count": 2}},
    },
    {
        "model": {"uri": "hf://o/m"},
        "engine": {"pipelineParallelSize": 2},
        "resources": {"gpu": {"count": 0}},
    },
    {"model": {"uri": "hf://o/m"}, "autoscaling": {"minReplicas": 3, "maxReplicas": 2}},
    {"model": {"uri": "hf://o/m"}, "autoscaling": {"minReplicas": 0, "maxReplicas": 2}},
    {"model": {"uri": "hf://o/m"}, "autoscaling": {"maxReplicas": 2, "provider": "keda"}},
    {
        "model": {"uri": "hf://o/m"},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 2,
            "provider": "keda",
            "prometheusAddress": "http://p:9090",
        },
    },
    {"model": {"uri": "hf://o/m"}, "cache": {"size": "1Gi", "persistentVolumeClaim": "c"}},
    {
        "model": {"uri": "hf://o/m"},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 2,
            "provider": "keda",
            "prometheusAddress": "http://p:9090",
        },
        "routing": {},
    },
    {"model": {"uri": "hf://o/m"}, "cache": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
    {
        "model": {"uri": "hf://o/m"},
        "cache": {"size": "1Gi", "accessMode": "ReadWriteOnce"},
        "replicas": 2,
    },
    {
        "model": {"uri": "hf://o/m"},
        "cache": {"size": "1Gi", "accessMode": "ReadWriteOnce"},
        "autoscaling": {"maxReplicas": 3},
    },
    {
        "model": {"uri": "hf://o/m"},
        "cache": {"size": "1Gi", "accessMode": "ReadWriteOnce"},
        "autoscaling": {"maxReplicas": 1},
    },
]


@pytest.mark.parametrize("spec", CROSS_FIELD_CASES)
def test_cel_rules_and_the_operator_agree(spec):
    obj = apply_defaults(model_deployment_schema(), model_deployment(spec))
    failures = cel_failures(obj)
    try:
        parse_spec(spec)
        operator_error = None
    except SpecError as error:
        operator_error = error
    if operator_error is None:
        assert failures == []
    else:
        assert failures and failures[0].startswith(operator_error.field), (failures, operator_error)


def test_every_cross_field_rule_is_in_the_crd():
    rules = [
        r["rule"]
        for _, node in walk(model_deployment_schema())
        for r in node.get("x-kubernetes-validations", [])
    ]
    for rule in CROSS_FIELD_RULES:
        if rule.cel is not None:
            assert rule.cel in rules


def test_cel_rejects_a_name_that_cannot_name_a_service():
    obj = apply_defaults(
        model_deployment_schema(), model_deployment(EXAMPLES["minimal"], name="9-lives")
    )
    assert cel_failures(obj) == ["metadata.name must be a DNS-1035 label (it names the Service)"]


TYPE_CASES = [
    ({"resources": {"gpu": {"count": "2"}}}, False),
    ({"engine": {"tensorParallelSize": True}}, False),
    ({"engine": {"enablePrefixCaching": "yes"}}, False),
    ({"engine": {"enablePrefixCaching": 1}}, False),
    ({"engine": {"gpuMemoryUtilization": "0.9"}}, False),
    ({"replicas": "3"}, False),
    ({"engine": {"gpuMemoryUtilization": 1}}, True),
    ({"engine": {"enablePrefixCaching": False}, "replicas": 3}, True),
]


@pytest.mark.parametrize(("fields", "valid"), TYPE_CASES)
def test_the_crd_schema_and_the_operator_agree_on_types(fields, valid):
    spec = {"model": {"uri": "hf://o/m"}, **fields}
    schema_ok = openapi_validator().is_valid(
        apply_defaults(model_deployment_schema(), model_deployment(spec))
    )
    try:
        parse_spec(spec)
        operator_ok = True
    except SpecError:
        operator_ok = False
    assert (schema_ok, operator_ok) == (valid, valid)
