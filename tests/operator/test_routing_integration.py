"""spec.routing with the real kopf operator against the fake Kubernetes API (kmock).

The fake API is no gateway: the tests write what a gateway controller and the Deployment
controller would (the InferencePool's status.parents, the picker's availableReplicas, a Gateway's
status.addresses) and check that the operator follows. CRDs are plain objects here: "installed"
means a CustomResourceDefinition object exists, which is all the operator looks at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.operator.kube_emulator import crd_object
from tests.operator.operator_process import (
    CRDS,
    DEPLOYMENTS,
    MD_PATH,
    NS,
    SCALED_OBJECTS,
    SERVICES,
    Cluster,
    free_port,
    operated_cluster,
    wait_for,
)

pytestmark = pytest.mark.slow

GATEWAY_NS = "gateway-system"
CONFIG_MAPS = f"/api/v1/namespaces/{NS}/configmaps"
ACCOUNTS = f"/api/v1/namespaces/{NS}/serviceaccounts"
BINDINGS = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"
POOLS = f"/apis/inference.networking.k8s.io/v1/namespaces/{NS}/inferencepools"
ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"
GATEWAYS = f"/apis/gateway.networking.k8s.io/v1/namespaces/{GATEWAY_NS}/gateways"
GATEWAY_REF = {"name": "inference-gateway", "namespace": GATEWAY_NS}
MODEL = {"uri": "hf://Qwen/Qwen3-8B"}


@pytest.fixture(scope="module")
def models_port() -> int:
    """Where the operator serves GET /v1/models (a gateway routes /v1/models to it)."""
    return free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, models_port: int) -> Iterator[Cluster]:
    with operated_cluster(
        tmp_path_factory.mktemp("operator-routing"),
        f"--default-gateway={GATEWAY_NS}/inference-gateway",
        f"--models-port={models_port}",
        namespaces=[NS, GATEWAY_NS],
    ) as cluster:
        yield cluster


@pytest.fixture
def crds(cluster: Cluster) -> Cluster:
    """The cluster with the InferencePool and HTTPRoute CRDs installed."""
    for name in (
        "inferencepools.inference.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
    ):
        if cluster.get(f"{CRDS}/{name}") is None:
            assert cluster.http.post(CRDS, json=crd_object(name)).status_code in (200, 201)
    return cluster


def routed_is(cluster: Cluster, name: str, status: str, reason: str | None = None) -> Any:
    def probe() -> dict[str, Any] | None:
        found = cluster.conditions(name).get("Routed")
        if found and found["status"] == status and reason in (None, found["reason"]):
            return found
        return None

    return wait_for(probe, what=f"Routed={status} {reason or ''}",
                    details=lambda: cluster.md(name).get("status"))  # fmt: skip


def test_missing_routing_crds_keep_serving_and_say_what_to_install(cluster: Cluster) -> None:
    if cluster.get(f"{CRDS}/inferencepools.inference.networking.k8s.io") is not None:
        pytest.skip("the CRDs are installed already (test order)")
    cluster.create_md("early", {"model": MODEL, "routing": {}})
    cluster.wait_get(f"{DEPLOYMENTS}/early")  # the model serves on its Service regardless
    found = routed_is(cluster, "early", "False", "RoutingCRDsMissing")
    assert "inferencepools.inference.networking.k8s.io" in found["message"]
    event = cluster.wait_event("early", "RoutingUnavailable")
    assert event["type"] == "Warning"
    assert cluster.get(f"{POOLS}/early") is None


def test_routing_makes_pool_picker_and_route_and_removing_it_prunes_them(crds: Cluster) -> None:
    cluster = crds
    md = cluster.create_md("qwen", {"model": MODEL, "routing": {"gatewayRef": GATEWAY_REF}})
    pool = cluster.wait_get(f"{POOLS}/qwen")
    route = cluster.wait_get(f"{ROUTES}/qwen")
    picker = cluster.wait_get(f"{DEPLOYMENTS}/qwen-epp")
    children = [
        pool,
        route,
        picker,
        cluster.wait_get(f"{SERVICES}/qwen-epp"),
        cluster.wait_get(f"{CONFIG_MAPS}/qwen-epp"),
        cluster.wait_get(f"{ACCOUNTS}/qwen-epp"),
        cluster.wait_get(f"{BINDINGS}/qwen-epp"),
    ]
    for child in children:
        assert child["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
        assert child["metadata"]["labels"]["modelplane.io/deployment"] == "qwen"
    assert pool["spec"]["endpointPickerRef"]["name"] == "qwen-epp"
    assert route["spec"]["parentRefs"][0]["name"] == "inference-gateway"
    assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
    routed_is(cluster, "qwen", "False", "Pending")  # no gateway has accepted the pool yet

    cluster.patch(f"{MD_PATH}/qwen", {"spec": {"routing": None}})
    for path in (f"{POOLS}/qwen", f"{ROUTES}/qwen", f"{DEPLOYMENTS}/qwen-epp",
                 f"{SERVICES}/qwen-epp", f"{CONFIG_MAPS}/qwen-epp", f"{ACCOUNTS}/qwen-epp",
                 f"{BINDINGS}/qwen-epp"):  # fmt: skip
        wait_for(lambda p=path: cluster.get(p) is None, what=f"{path} to be deleted")
    wait_for(lambda: "Routed" not in cluster.conditions("qwen"), what="Routed to go away")
    assert cluster.get(f"{DEPLOYMENTS}/qwen") is not None  # the model itself stays
    assert cluster.get(f"{SERVICES}/qwen") is not None


def test_without_routing_no_routing_children_exist(crds: Cluster) -> None:
    cluster = crds
    cluster.create_md("plain", {"model": MODEL})
    cluster.wait_get(f"{DEPLOYMENTS}/plain")
    wait_for(lambda: cluster.md("plain").get("status", {}).get("observedGeneration"),
             what="a status")  # fmt: skip
    for path in (f"{POOLS}/plain", f"{ROUTES}/plain", f"{DEPLOYMENTS}/plain-epp"):
        assert cluster.get(path) is None
    assert "Routed" not in cluster.conditions("plain")


def test_an_adapter_adds_a_route_match(crds: Cluster) -> None:
    cluster = crds
    cluster.create_md("llama", {"model": {**MODEL, "servedModelName": "llama"}, "routing": {}})
    route = cluster.wait_get(f"{ROUTES}/llama")
    assert route["spec"]["parentRefs"][0]["namespace"] == GATEWAY_NS  # the operator's default

    def names() -> list[str]:
        spec = (cluster.get(f"{ROUTES}/llama") or {}).get("spec", {})
        return [m["headers"][0]["value"] for r in spec.get("rules", []) for m in r["matches"]]

    assert names() == ["llama"]
    cluster.patch(
        f"{MD_PATH}/llama", {"spec": {"adapters": [{"name": "sql-lora", "uri": "hf://o/sql"}]}}
    )
    wait_for(lambda: names() == ["llama", "sql-lora"], what="a route match for the adapter",
             details=names)  # fmt: skip


def test_scale_to_zero_is_accepted_only_with_routing(crds: Cluster) -> None:
    cluster = crds
    autoscaling = {"provider": "keda", "minReplicas": 0, "maxReplicas": 2,
                   "prometheusAddress": "http://prometheus.monitoring:9090"}  # fmt: skip
    cluster.create_md("sleepy", {"model": MODEL, "autoscaling": autoscaling})
    invalid = wait_for(lambda: cluster.conditions("sleepy").get("SpecValid"), what="SpecValid")
    assert invalid["status"] == "False"
    assert "spec.autoscaling.minReplicas" in invalid["message"]
    assert "spec.routing" in invalid["message"]
    assert cluster.get(f"{SCALED_OBJECTS}/sleepy") is None

    cluster.patch(f"{MD_PATH}/sleepy", {"spec": {"routing": {"gatewayRef": GATEWAY_REF}}})
    scaled = cluster.wait_get(f"{SCALED_OBJECTS}/sleepy")
    assert scaled["spec"]["minReplicaCount"] == 0
    picker_trigger = scaled["spec"]["triggers"][1]
    assert "llm_d_epp_flow_control_queue_size" in picker_trigger["metadata"]["query"]
    wait_for(lambda: (c := cluster.conditions("sleepy").get("SpecValid")) and c["status"] == "True",
             what="SpecValid=True")  # fmt: skip


def test_routed_follows_the_pool_status_and_the_picker(crds: Cluster, models_port: int) -> None:
    cluster = crds
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "inference-gateway", "namespace": GATEWAY_NS},
        "spec": {"gatewayClassName": "istio",
                 "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]},
        "status": {"addresses": [{"type": "IPAddress", "value": "203.0.113.10"}]},
    }  # fmt: skip
    if cluster.get(f"{GATEWAYS}/inference-gateway") is None:
        assert cluster.http.post(GATEWAYS, json=gateway).status_code in (200, 201)
    cluster.create_md("phi", {"model": MODEL, "routing": {"gatewayRef": GATEWAY_REF}})
    cluster.wait_get(f"{POOLS}/phi")
    routed_is(cluster, "phi", "False", "Pending")

    parent = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            **GATEWAY_REF}, "controllerName": "istio.io/gateway-controller"}  # fmt: skip
    accepted = {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                "lastTransitionTime": "2026-11-29T12:00:00Z"}  # fmt: skip
    cluster.patch(f"{POOLS}/phi/status",
                  {"status": {"parents": [{**parent, "conditions": [accepted]}]}})  # fmt: skip
    routed_is(cluster, "phi", "False", "EndpointPickerUnavailable")

    picker = cluster.wait_get(f"{DEPLOYMENTS}/phi-epp")
    cluster.patch(
        f"{DEPLOYMENTS}/phi-epp/status",
        {"status": {"observedGeneration": picker["metadata"]["generation"], "replicas": 1,
                    "readyReplicas": 1, "availableReplicas": 1}},
    )  # fmt: skip
    found = routed_is(cluster, "phi", "True", "Routed")
    assert "gateway-system/inference-gateway" in found["message"]
    status = wait_for(
        lambda: (s := cluster.md("phi")["status"]).get("gatewayEndpoint") and s,
        what="status.gatewayEndpoint",
    )
    assert status["gatewayEndpoint"] == "http://203.0.113.10/v1"
    assert status["endpoint"] == f"http://phi.{NS}.svc.cluster.local:8000/v1"  # still there

    # Ready as well: GET /v1/models through the gateway (served by the operator) lists it.
    server = cluster.wait_get(f"{DEPLOYMENTS}/phi")
    cluster.patch(
        f"{DEPLOYMENTS}/phi/status",
        {"status": {"observedGeneration": server["metadata"]["generation"], "replicas": 1,
                    "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}},
    )  # fmt: skip
    models_url = f"http://127.0.0.1:{models_port}/v1/models"
    client = openai.OpenAI(base_url=models_url.removesuffix("/models"), api_key="x", max_retries=0)

    def listed() -> list[str]:
        return [model.id for model in client.models.list().data]

    wait_for(lambda: "phi" in listed(), timeout=30, what="phi in GET /v1/models", details=listed)
    assert httpx.get(models_url.replace("/v1/models", "/v1/chat"), timeout=5).status_code == 404

    rejected = {**accepted, "status": "False", "reason": "NotSupportedByParent",
                "message": "InferencePool is not a supported backend"}  # fmt: skip
    cluster.patch(f"{POOLS}/phi/status",
                  {"status": {"parents": [{**parent, "conditions": [rejected]}]}})  # fmt: skip
    found = routed_is(cluster, "phi", "False", "PoolNotSupportedByParent")
    assert "not a supported backend" in found["message"]
    wait_for(lambda: "gatewayEndpoint" not in cluster.md("phi")["status"],
             what="gatewayEndpoint to go while not routed")  # fmt: skip
    wait_for(lambda: "phi" not in listed(), timeout=30, what="phi to leave GET /v1/models")


def test_deleted_or_edited_routing_children_are_restored(crds: Cluster) -> None:
    cluster = crds
    cluster.create_md("gemma", {"model": MODEL, "routing": {"gatewayRef": GATEWAY_REF}})
    route = cluster.wait_get(f"{ROUTES}/gemma")
    binding = cluster.wait_get(f"{BINDINGS}/gemma-epp")
    config = cluster.wait_get(f"{CONFIG_MAPS}/gemma-epp")
    assert cluster.http.delete(f"{ROUTES}/gemma").status_code == 200
    assert cluster.http.delete(f"{BINDINGS}/gemma-epp").status_code == 200
    cluster.patch(f"{CONFIG_MAPS}/gemma-epp", {"data": {"epp-config.yaml": "plugins: []\n"}})
    cluster.patch(f"{POOLS}/gemma", {"spec": {"targetPorts": [{"number": 9999}]}})

    cluster.wait_recreated(f"{ROUTES}/gemma", route)
    cluster.wait_recreated(f"{BINDINGS}/gemma-epp", binding)
    wait_for(
        lambda: (c := cluster.get(f"{CONFIG_MAPS}/gemma-epp")) and c["data"] == config["data"],
        what="the picker config to be restored",
    )
    wait_for(
        lambda: (p := cluster.get(f"{POOLS}/gemma")) and p["spec"]["targetPorts"] == [{"number": 8000}],
        what="the pool's target port to be restored",
    )  # fmt: skip
