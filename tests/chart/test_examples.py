"""Every example manifest is valid for the API server (CRD schema, Kubernetes schemas) and for the
operator (its own spec validation), and turns into the children its comments promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelplane.operator import handlers
from modelplane.operator import spec as specmod
from modelplane.operator.resources import Owner, plan_children
from tests.chart.delivery_checks import (
    EXAMPLES,
    Manifest,
    cel_failures,
    load_crd,
    load_yaml_documents,
    validate_kubernetes,
)

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
EXPECTED_EXAMPLES = {
    "minimal.yaml",
    "qwen-awq-tp2.yaml",
    "autoscaling-keda.yaml",
    "lora-adapters.yaml",
    "api-keys.yaml",
    "model-cache-pvc.yaml",
    "one-endpoint.yaml",
    "llama-405b-two-nodes.yaml",
}
# The smallest ModelDeployment a user writes by hand: it must work as is.
HAND_WRITTEN_MINIMAL = """
apiVersion: modelplane.io/v1alpha1
kind: ModelDeployment
metadata: {name: qwen3-8b}
spec:
  model: {uri: hf://Qwen/Qwen3-8B}
"""


def model_deployments(path: Path) -> list[Manifest]:
    return [d for d in load_yaml_documents(path) if d["kind"] == specmod.KIND]


def planned(md: Manifest) -> list[Manifest]:
    """The objects the operator would create for one ModelDeployment."""
    owner = Owner(name=md["metadata"]["name"], namespace="models", uid="uid-1")
    plan = plan_children(
        owner,
        specmod.parse_spec(md),
        default_image=specmod.DEFAULT_IMAGE,
        service_monitor_available=True,
    )
    return plan.create + plan.apply


def children(path: Path, name: str | None = None) -> dict[str, Manifest]:
    """The objects for the example's ModelDeployment (the only one, or `name`), by kind."""
    mds = [md for md in model_deployments(path) if name in (None, md["metadata"]["name"])]
    (md,) = mds
    # By kind, the serving pod's first: the endpoint picker's Deployment/Service come later.
    objects: dict[str, Manifest] = {}
    for manifest in planned(md):
        objects.setdefault(manifest["kind"], manifest)
    return objects


def server_container(objects: dict[str, Manifest]) -> Manifest:
    container: Manifest = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_examples_the_issue_asks_for_exist() -> None:
    assert {p.name for p in EXAMPLE_FILES} == EXPECTED_EXAMPLES


def test_minimal_example_is_the_issue_yaml_verbatim() -> None:
    assert load_yaml_documents(EXAMPLES / "minimal.yaml") == [yaml.safe_load(HAND_WRITTEN_MINIMAL)]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_model_deployments_match_the_crd_schema(
    path: Path, md_validator: jsonschema.Draft202012Validator
) -> None:
    mds = model_deployments(path)
    assert mds, f"{path.name} has no ModelDeployment"
    for md in mds:
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in md_validator.iter_errors(md)
        ]
        assert not errors, errors


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_model_deployments_pass_the_crd_cel_rules(path: Path) -> None:
    crd = load_crd()
    for md in model_deployments(path):
        assert cel_failures(crd, md) == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_model_deployments_pass_the_operators_validation(path: Path) -> None:
    for md in model_deployments(path):
        # validated_spec is what the operator runs on every event: metadata.name rules + parse_spec.
        handlers.validated_spec(md)
        specmod.parse_spec(md)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_builtin_objects_match_the_kubernetes_schemas(path: Path) -> None:
    for doc in load_yaml_documents(path):
        if doc["kind"] != specmod.KIND:
            validate_kubernetes(doc)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_children_are_valid_kubernetes_objects(path: Path) -> None:
    for manifest in (m for md in model_deployments(path) for m in planned(md)):
        if manifest["apiVersion"].split("/")[0] in (
            "keda.sh",
            "monitoring.coreos.com",
            "inference.networking.k8s.io",
            "gateway.networking.k8s.io",
            "leaderworkerset.x-k8s.io",
        ):
            continue  # third-party CRDs: the operator's tests check them against their schemas
        validate_kubernetes(manifest)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_secrets_match_their_references(path: Path) -> None:
    """A Secret shipped next to a ModelDeployment has the name and key the spec points at."""
    docs = load_yaml_documents(path)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for md in model_deployments(path):
        spec = md["spec"]
        refs = [spec["model"].get("hfTokenSecretRef"), spec.get("auth", {}).get("apiKeySecretRef")]
        for ref in filter(None, refs):
            assert ref["name"] in secrets, f"{path.name}: Secret {ref['name']} missing"
            assert ref["key"] in secrets[ref["name"]]["stringData"]


# --- each example does what its comments say ----------------------------------------------------


def test_qwen_awq_example_splits_the_model_over_two_gpus() -> None:
    objects = children(EXAMPLES / "qwen-awq-tp2.yaml")
    container = server_container(objects)
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--quantization") + 1] == "awq"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])


def test_keda_example_scales_to_zero() -> None:
    objects = children(EXAMPLES / "autoscaling-keda.yaml")
    scaled = objects["ScaledObject"]["spec"]
    assert scaled["minReplicaCount"] == 0
    assert scaled["maxReplicaCount"] == 4
    assert "HorizontalPodAutoscaler" not in objects
    assert "replicas" not in objects["Deployment"]["spec"]  # left to KEDA
    assert "ServiceMonitor" in objects
    # Only the endpoint picker wakes a model at zero: routed through the gateway.
    assert "InferencePool" in objects and "HTTPRoute" in objects
    assert [t.get("name") for t in scaled["triggers"]] == [None, "endpoint-picker"]


def test_lora_example_serves_the_adapter() -> None:
    container = server_container(children(EXAMPLES / "lora-adapters.yaml"))
    args = container["args"]
    assert "--enable-lora" in args
    assert any("sql-lora=yard1/llama-2-7b-sql-lora-test" in a for a in args)
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}


def test_api_keys_example_mounts_the_key_file_never_passes_keys_as_args() -> None:
    objects = children(EXAMPLES / "api-keys.yaml")
    container = server_container(objects)
    args = container["args"]
    assert "--api-key-file" in args
    assert not any("sk-" in a for a in args)
    assert not any("sk-" in str(e) for e in container["env"])
    volumes = objects["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == "qwen3-8b-api-keys" for v in volumes)


def test_cache_example_creates_its_claim_and_mounts_it() -> None:
    objects = children(EXAMPLES / "model-cache-pvc.yaml")
    pvc = objects["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "mistral-7b-cache"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert pvc["spec"]["storageClassName"] == "standard-rwx"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = objects["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "mistral-7b-cache"}} in volumes
    mounts = server_container(objects)["volumeMounts"]
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in mounts  # fetched first


# --- the validators catch mistakes (so the passes above mean something) --------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["engine"].update(tensorParalelSize=2), "spec.engine"),
        (lambda s: s["engine"].update(quantization="awq4"), "spec.engine.quantization"),
        (lambda s: s["resources"]["gpu"].update(count="two"), "spec.resources.gpu.count"),
    ],
    ids=["typo", "bad-enum", "wrong-type"],
)
def test_a_broken_example_fails_both_validations(
    mutate: Any, field: str, md_validator: jsonschema.Draft202012Validator
) -> None:
    (md,) = model_deployments(EXAMPLES / "qwen-awq-tp2.yaml")
    mutate(md["spec"])
    assert list(md_validator.iter_errors(md))
    with pytest.raises(specmod.SpecError) as error:
        specmod.parse_spec(md)
    assert error.value.field.startswith(field)


def test_a_cross_field_mistake_is_caught_by_cel_and_by_the_operator() -> None:
    (md,) = model_deployments(EXAMPLES / "qwen-awq-tp2.yaml")
    md["spec"]["resources"]["gpu"]["count"] = 3
    assert [m for m in cel_failures(load_crd(), md) if "gpu.count" in m]
    with pytest.raises(specmod.SpecError) as error:
        specmod.parse_spec(md)
    assert error.value.field == "spec.resources.gpu.count"


def test_one_endpoint_example_puts_two_models_behind_one_gateway() -> None:
    path = EXAMPLES / "one-endpoint.yaml"
    routes = {
        md["metadata"]["name"]: children(path, md["metadata"]["name"])["HTTPRoute"]
        for md in model_deployments(path)
    }
    assert set(routes) == {"qwen3-8b", "llama-3-1-8b"}
    parents = {
        (r["spec"]["parentRefs"][0]["namespace"], r["spec"]["parentRefs"][0]["name"])
        for r in routes.values()
    }
    assert parents == {("gateway-system", "inference-gateway")}
    names = {
        route: [m["headers"][0]["value"] for rule in r["spec"]["rules"] for m in rule["matches"]]
        for route, r in routes.items()
    }
    assert names == {"qwen3-8b": ["qwen3-8b", "sql-lora"], "llama-3-1-8b": ["llama-3.1-8b"]}
    llama = children(path, "llama-3-1-8b")
    assert llama["ScaledObject"]["spec"]["minReplicaCount"] == 0
    assert llama["HTTPRoute"]["spec"]["rules"][0]["timeouts"]["request"] == "15m"
