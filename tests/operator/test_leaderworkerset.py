"""Models larger than one node: the spec (`resources.nodes`), the LeaderWorkerSet builder and the
children around it, with plain dicts; every LeaderWorkerSet against the upstream LWS CRD schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelplane.operator.resources import ChildRef, Owner, plan_children
from modelplane.operator.resources import leaderworkerset as lws
from modelplane.operator.resources.autoscaler import build_hpa, build_scaled_object, keda_query
from modelplane.operator.resources.deployment import build_deployment
from modelplane.operator.resources.inferencepool import build_inference_pool
from modelplane.operator.resources.pdb import build_pdb
from modelplane.operator.resources.service import build_service
from modelplane.operator.spec import SpecError, parse_spec
from tests.crd_checks import (
    apply_defaults,
    cel_failures,
    model_deployment,
    model_deployment_schema,
    strict,
)

LWS_CRD = Path(__file__).parent / "schemas" / "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
REPO = Path(__file__).resolve().parents[2]
OWNER = Owner(name="llama-405b", namespace="ml", uid="5e7a-uid")
IMAGE = "registry.example/modelplane-server:1.0"
# The 405B-class shape of the issue: TP 8 inside a node, PP 2 across two 8-GPU nodes.
LLAMA_405B: dict[str, Any] = {
    "model": {
        "uri": "hf://meta-llama/Llama-3.1-405B-Instruct",
        "hfTokenSecretRef": {"name": "hf", "key": "token"},
    },
    "engine": {"tensorParallelSize": 8, "pipelineParallelSize": 2, "maxModelLen": 32768},
    "resources": {"nodes": 2, "gpu": {"count": 8}},
    "auth": {"apiKeySecretRef": {"name": "api-keys", "key": "keys"}},
    "cache": {"size": "1Ti"},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "405b": LLAMA_405B,
    "gpu-count-defaulted": {
        "model": {"uri": "hf://deepseek-ai/DeepSeek-V3"},
        "engine": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
        "resources": {"nodes": 2},
        "replicas": 3,
    },
    "four-nodes-hpa": {
        "model": {"uri": "hf://moonshotai/Kimi-K2-Instruct"},
        "engine": {"tensorParallelSize": 8, "pipelineParallelSize": 4},
        "resources": {"nodes": 4, "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3},
    },
    "cpu-two-nodes-keda": {
        "model": {"uri": "file:///models/smollm2"},
        "engine": {"pipelineParallelSize": 2},
        "resources": {"nodes": 2, "gpu": {"count": 0}},
        "autoscaling": {
            "provider": "keda",
            "minReplicas": 1,
            "maxReplicas": 2,
            "prometheusAddress": "http://prometheus:9090",
        },
    },
}


def spec_of(body: dict[str, Any]) -> Any:
    return parse_spec(copy.deepcopy(body))


def leader_worker_set(body: dict[str, Any]) -> dict[str, Any]:
    return lws.build_leader_worker_set(OWNER, spec_of(body), default_image=IMAGE)


def templates(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    group = leader_worker_set(body)["spec"]["leaderWorkerTemplate"]
    return group["leaderTemplate"], group["workerTemplate"]


def server(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = template["spec"]["containers"]
    return container


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --- spec -----------------------------------------------------------------------------------


def test_nodes_defaults_to_one_and_gpu_count_to_tp_times_pp_over_nodes():
    assert spec_of({"model": {"uri": "hf://a/b"}}).resources.nodes == 1
    spec = spec_of(VARIANTS["gpu-count-defaulted"])
    assert (spec.gpus_per_pod, spec.gpus_per_replica, spec.multi_node) == (8, 16, True)


@pytest.mark.parametrize(
    ("resources", "engine", "field"),
    [
        (
            {"nodes": 2, "gpu": {"count": 16}},
            {"tensorParallelSize": 8, "pipelineParallelSize": 2},
            "spec.resources.gpu.count",
        ),
        (
            {"nodes": 3},
            {"tensorParallelSize": 8, "pipelineParallelSize": 2},
            "spec.resources.nodes",
        ),
        ({"nodes": 0}, {}, "spec.resources.nodes"),
        ({"nodes": "2"}, {"pipelineParallelSize": 2}, "spec.resources.nodes"),
        ({"nodes": 2, "rwo": True}, {"pipelineParallelSize": 2}, "spec.cache.accessMode"),
    ],
)
def test_bad_node_counts_name_the_field_in_the_operator_and_in_cel(resources, engine, field):
    resources = dict(resources)
    cache = {"size": "10Gi", "accessMode": "ReadWriteOnce"} if resources.pop("rwo", False) else {}
    body = {"model": {"uri": "hf://a/b"}, "engine": engine, "resources": resources, "cache": cache}
    with pytest.raises(SpecError) as error:
        parse_spec(body)
    assert error.value.field == field
    schema = model_deployment_schema()
    obj = apply_defaults(schema, model_deployment(body))
    structurally_valid = jsonschema.Draft4Validator(schema).is_valid(obj)
    assert not structurally_valid or any(field in m for m in cel_failures(schema, obj)), (
        "the API server must reject it too"
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_valid_multi_node_specs_pass_the_crd_schema_and_cel(name):
    schema = model_deployment_schema()
    obj = apply_defaults(schema, model_deployment(VARIANTS[name]))
    jsonschema.Draft4Validator(schema).validate(obj)
    assert cel_failures(schema, obj) == []


# --- the LeaderWorkerSet --------------------------------------------------------------------


def test_group_of_nodes_pods_restarted_together_and_started_leader_first():
    group = leader_worker_set(LLAMA_405B)
    assert (group["apiVersion"], group["kind"]) == (
        "leaderworkerset.x-k8s.io/v1",
        "LeaderWorkerSet",
    )
    assert group["metadata"]["name"] == OWNER.name
    assert group["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    spec = group["spec"]
    assert spec["replicas"] == 1
    assert spec["leaderWorkerTemplate"]["size"] == 2
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # The leader turns Ready only after the workers joined: LeaderReady would deadlock.
    assert spec["startupPolicy"] == "LeaderCreated"


def test_replicas_are_left_to_the_autoscaler_when_one_is_configured():
    assert "replicas" not in leader_worker_set(VARIANTS["four-nodes-hpa"])["spec"]
    assert leader_worker_set(VARIANTS["gpu-count-defaulted"])["spec"]["replicas"] == 3


def test_leader_serves_the_api_as_node_rank_zero_at_the_lws_leader_address():
    leader, _ = templates(LLAMA_405B)
    container = server(leader)
    args = container["args"]
    assert container["command"] == ["modelplane-server"]
    assert "--headless" not in args
    assert flag(args, "--tensor-parallel-size") == "8"
    assert flag(args, "--pipeline-parallel-size") == "2"
    assert flag(args, "--nnodes") == "2"
    assert flag(args, "--node-rank") == "0"
    assert flag(args, "--master-addr") == "$(LWS_LEADER_ADDRESS)"
    assert flag(args, "--master-port") == str(lws.MASTER_PORT)
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["failureThreshold"] >= 360
    assert leader["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_workers_run_the_same_command_headless_with_their_lws_worker_index():
    leader, worker = templates(LLAMA_405B)
    leader_args, worker_args = server(leader)["args"], server(worker)["args"]
    assert server(worker)["command"] == ["modelplane-server"]
    assert worker_args[0] == "--headless"
    assert flag(worker_args, "--node-rank") == "$(LWS_WORKER_INDEX)"
    # Everything else is the leader's command line: one engine, the same flags on every node.
    strip = lambda args: [a for a in args if a not in ("--headless", "0", "$(LWS_WORKER_INDEX)")]  # noqa: E731
    assert strip(worker_args) == strip(leader_args)
    container = server(worker)
    for absent in ("ports", "readinessProbe", "livenessProbe", "startupProbe", "lifecycle"):
        assert absent not in container, absent  # nothing listens on HTTP in a worker
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert "prometheus.io/scrape" not in (worker["metadata"].get("annotations") or {})


@pytest.mark.parametrize("role", [0, 1])
def test_every_pod_gets_gpus_shm_cache_hf_token_and_the_security_context(role):
    template = templates(LLAMA_405B)[role]
    pod, container = template["spec"], server(template)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"] == {"name": "shm", "emptyDir": {"medium": "Memory"}}
    # The cache claim the operator creates (ReadWriteMany by default): shared by the group's pods.
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "llama-405b-cache"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/cache", "/tmp"} <= mounts
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_the_405b_example_is_a_two_node_leader_worker_set(lws_validator):
    docs = list(yaml.safe_load_all((REPO / "examples" / "llama-405b-two-nodes.yaml").read_text()))
    (md,) = [d for d in docs if d["kind"] == "ModelDeployment"]
    owner = Owner(name=md["metadata"]["name"], namespace="default", uid="u")
    plan = plan_children(owner, parse_spec(md), default_image=IMAGE)
    (group,) = [m for m in plan.apply if m["kind"] == "LeaderWorkerSet"]
    lws_validator.validate(group)
    template = group["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    for pod in (template["leaderTemplate"], template["workerTemplate"]):
        container = pod["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert flag(container["args"], "--tensor-parallel-size") == "8"
        assert flag(container["args"], "--pipeline-parallel-size") == "2"


def test_gpu_product_and_cpu_pods():
    leader, worker = templates(VARIANTS["four-nodes-hpa"])
    for template in (leader, worker):
        assert template["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert server(template)["resources"]["limits"]["nvidia.com/gpu"] == "8"  # 32 / 4 nodes
    leader, worker = templates(VARIANTS["cpu-two-nodes-keda"])
    for template in (leader, worker):
        assert "nvidia.com/gpu" not in str(server(template).get("resources"))


def test_leader_pods_reuse_the_deployment_pod_template():
    spec = spec_of(LLAMA_405B)
    single = {**copy.deepcopy(LLAMA_405B), "resources": {"gpu": {"count": 16}}}
    deployment_pod = build_deployment(OWNER, spec_of(single), default_image=IMAGE)["spec"][
        "template"
    ]
    leader = lws.build_leader_template(OWNER, spec, default_image=IMAGE)
    assert leader["spec"]["volumes"] == deployment_pod["spec"]["volumes"]
    assert leader["spec"]["securityContext"] == deployment_pod["spec"]["securityContext"]
    assert server(leader)["env"] == server(deployment_pod)["env"]


# --- the children around it -----------------------------------------------------------------


def test_nodes_above_one_swaps_the_deployment_for_a_leader_worker_set():
    plan = plan_children(OWNER, spec_of(LLAMA_405B), default_image=IMAGE)
    kinds = [m["kind"] for m in plan.apply]
    assert "LeaderWorkerSet" in kinds and "Deployment" not in kinds
    assert ChildRef("apps/v1", "Deployment", OWNER.name) in plan.delete
    single = plan_children(OWNER, spec_of({"model": LLAMA_405B["model"]}), default_image=IMAGE)
    assert "Deployment" in [m["kind"] for m in single.apply]
    assert ChildRef(lws.API_VERSION, lws.KIND, OWNER.name) in single.delete


def test_service_selects_only_the_group_leaders():
    service = build_service(OWNER, spec_of(LLAMA_405B))
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "modelplane-server",
        "app.kubernetes.io/instance": OWNER.name,
        "leaderworkerset.sigs.k8s.io/worker-index": "0",
    }
    single = build_service(OWNER, spec_of({"model": LLAMA_405B["model"]}))
    assert "leaderworkerset.sigs.k8s.io/worker-index" not in single["spec"]["selector"]


def test_inference_pool_selects_only_the_group_leaders():
    pool = build_inference_pool(OWNER, spec_of(LLAMA_405B))
    assert (
        pool["spec"]["selector"]["matchLabels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    )


def test_autoscalers_target_the_leader_worker_set():
    target = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": OWNER.name,
    }
    assert build_hpa(OWNER, spec_of(VARIANTS["four-nodes-hpa"]))["spec"]["scaleTargetRef"] == target
    keda = spec_of(VARIANTS["cpu-two-nodes-keda"])
    scaled = build_scaled_object(OWNER, keda)
    assert scaled["spec"]["scaleTargetRef"] == target
    # Only leaders report in-flight requests; their pods are <name>-<group index>.
    assert 'pod=~"llama-405b-[0-9]+"' in keda_query(OWNER, keda)
    assert scaled["spec"]["triggers"][0]["metadata"]["query"] == keda_query(OWNER, keda)


def test_pdb_covers_every_pod_of_every_group():
    # A drained worker takes its whole group down: one pod at a time is one group at a time.
    pdb = build_pdb(OWNER, spec_of(VARIANTS["gpu-count-defaulted"]))
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "leaderworkerset.sigs.k8s.io/worker-index" not in pdb["spec"]["selector"]["matchLabels"]


# --- the upstream LWS CRD schema ------------------------------------------------------------


@pytest.fixture(scope="module")
def lws_validator() -> jsonschema.Draft4Validator:
    vendored = yaml.safe_load(LWS_CRD.read_text())
    (version,) = vendored["spec"]["versions"]
    assert version["name"] == "v1"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.hpaPodSelector"
    schema = version["schema"]["openAPIV3Schema"]
    # ObjectMeta is `type: object` in a CRD schema (the API server checks it itself).
    return jsonschema.Draft4Validator(strict(schema))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_leader_worker_set_validates_against_the_upstream_lws_crd(name, lws_validator):
    group = leader_worker_set(VARIANTS[name])
    lws_validator.validate(group)
    broken = copy.deepcopy(group)
    broken["spec"]["startupPolicy"] = "WorkersFirst"
    assert not lws_validator.is_valid(broken)
    broken = copy.deepcopy(group)
    broken["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["argz"] = []
    assert not lws_validator.is_valid(broken)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_pod_templates_validate_against_the_kubernetes_schema(name):
    group = leader_worker_set(VARIANTS[name])["spec"]["leaderWorkerTemplate"]
    for template in (group["leaderTemplate"], group["workerTemplate"]):
        pod = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": template,
        }
        kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), strict=True)
