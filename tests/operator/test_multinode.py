"""The real kopf operator with `resources.nodes` > 1 against the fake API (kmock) on loopback.

The emulator serves the LeaderWorkerSet kind (kube_emulator.EXTRA_RESOURCES); whether LWS is
"installed" is its CRD object, which this module's cluster starts without. The emulator runs
no LWS controller: the tests write the LeaderWorkerSet status it would report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelplane.operator.resources import leaderworkerset as lws
from tests.operator.kube_emulator import crd_object
from tests.operator.operator_process import (
    CRDS,
    DEPLOYMENTS,
    HPAS,
    MD_PATH,
    NS,
    SERVICES,
    Cluster,
    operated_cluster,
    wait_for,
)

pytestmark = pytest.mark.slow

LWS_PATH = f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{NS}/leaderworkersets"
TWO_NODES: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-405B-Instruct"},
    "engine": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
    "resources": {"nodes": 2},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with operated_cluster(tmp_path_factory.mktemp("operator-multinode")) as cluster:
        yield cluster


@pytest.fixture
def lws_installed(cluster: Cluster) -> Cluster:
    response = cluster.http.post(CRDS, json=crd_object(lws.CRD_NAME))
    assert response.status_code in (200, 201, 409), response.text
    return cluster


def test_without_lws_installed_a_condition_says_so_until_it_is_installed(cluster: Cluster) -> None:
    cluster.create_md("early", TWO_NODES)
    condition = wait_for(
        lambda: (
            (c := cluster.conditions("early").get("Ready", {})).get("reason")
            == "LeaderWorkerSetNotInstalled"
            and c
        ),
        what="Ready=False LeaderWorkerSetNotInstalled",
        details=lambda: cluster.md("early").get("status"),
    )
    assert condition["status"] == "False"
    assert "spec.resources.nodes 2" in condition["message"]
    assert "lws.sigs.k8s.io" in condition["message"]
    assert cluster.md("early")["status"]["phase"] == "Failed"
    event = cluster.wait_event("early", "LeaderWorkerSetNotInstalled")
    assert event["type"] == "Warning"
    # Nothing was created meanwhile: not a Deployment pretending to be the model.
    assert cluster.get(f"{DEPLOYMENTS}/early") is None
    assert cluster.get(f"{LWS_PATH}/early") is None

    # LWS gets installed: the operator's retry (10 s backoff) creates the LeaderWorkerSet.
    response = cluster.http.post(CRDS, json=crd_object(lws.CRD_NAME))
    assert response.status_code in (200, 201), response.text
    created = cluster.wait_get(f"{LWS_PATH}/early", timeout=40)
    assert created["spec"]["leaderWorkerTemplate"]["size"] == 2


def test_create_with_two_nodes_makes_a_leader_worker_set_and_a_leader_only_service(
    lws_installed: Cluster,
) -> None:
    cluster = lws_installed
    md = cluster.create_md("llama", {**TWO_NODES, "replicas": 2})
    group = cluster.wait_get(f"{LWS_PATH}/llama")
    service = cluster.wait_get(f"{SERVICES}/llama")
    assert group["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    assert group["spec"]["replicas"] == 2
    template = group["spec"]["leaderWorkerTemplate"]
    assert (template["size"], template["restartPolicy"]) == (2, "RecreateGroupOnPodRestart")
    leader_args = template["leaderTemplate"]["spec"]["containers"][0]["args"]
    worker_args = template["workerTemplate"]["spec"]["containers"][0]["args"]
    assert "--headless" not in leader_args and worker_args[0] == "--headless"
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert cluster.get(f"{DEPLOYMENTS}/llama") is None

    # What the LWS controller reports once both groups (leader + worker each) are ready.
    generation = group["metadata"]["generation"]
    cluster.patch(
        f"{LWS_PATH}/llama/status",
        {
            "status": {
                "observedGeneration": generation,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 2,
                "hpaPodSelector": "leaderworkerset.sigs.k8s.io/name=llama,leaderworkerset.sigs.k8s.io/worker-index=0",
                "conditions": [{"type": "Available", "status": "True", "reason": "AllGroupsReady",
                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            }
        },
    )  # fmt: skip
    status = wait_for(
        lambda: (s := cluster.md("llama").get("status", {})).get("phase") == "Ready" and s,
        what="phase Ready from the LeaderWorkerSet",
        details=lambda: cluster.md("llama").get("status"),
    )
    assert status["workloadKind"] == "LeaderWorkerSet"
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert cluster.conditions("llama")["Ready"]["message"] == "2/2 replicas ready"

    cluster.patch(f"{LWS_PATH}/llama/status", {"status": {"readyReplicas": 1}})
    wait_for(lambda: cluster.md("llama")["status"]["phase"] == "Degraded", what="phase Degraded")


def test_switching_nodes_swaps_the_workload_and_prunes_the_other(lws_installed: Cluster) -> None:
    cluster = lws_installed
    cluster.create_md("swap", TWO_NODES)
    cluster.wait_get(f"{LWS_PATH}/swap")
    wait_for(
        lambda: cluster.md("swap").get("status", {}).get("workloadKind") == "LeaderWorkerSet",
        what="workloadKind LeaderWorkerSet",
    )

    cluster.patch(f"{MD_PATH}/swap", {"spec": {"resources": {"nodes": 1}}})
    deployment = cluster.wait_get(f"{DEPLOYMENTS}/swap")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "16"  # TP 8 x PP 2 on one node
    wait_for(lambda: cluster.get(f"{LWS_PATH}/swap") is None, what="the LeaderWorkerSet pruned")
    wait_for(
        lambda: cluster.md("swap").get("status", {}).get("workloadKind") == "Deployment",
        what="workloadKind Deployment",
        details=lambda: cluster.md("swap").get("status"),
    )
    service = cluster.get(f"{SERVICES}/swap")
    assert service is not None
    assert "leaderworkerset.sigs.k8s.io/worker-index" not in service["spec"]["selector"]

    cluster.patch(f"{MD_PATH}/swap", {"spec": {"resources": {"nodes": 2}}})
    group = cluster.wait_get(f"{LWS_PATH}/swap")
    assert group["spec"]["leaderWorkerTemplate"]["size"] == 2
    wait_for(lambda: cluster.get(f"{DEPLOYMENTS}/swap") is None, what="the Deployment pruned")
    wait_for(
        lambda: (
            (s := cluster.get(f"{SERVICES}/swap"))
            and s["spec"]["selector"].get("leaderworkerset.sigs.k8s.io/worker-index") == "0"
        ),
        what="the Service back to leaders only",
    )


def test_autoscaler_targets_the_leader_worker_set(lws_installed: Cluster) -> None:
    cluster = lws_installed
    cluster.create_md("scaled", {**TWO_NODES, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}})
    hpa = cluster.wait_get(f"{HPAS}/scaled")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "scaled",
    }
    group = cluster.wait_get(f"{LWS_PATH}/scaled")
    assert "replicas" not in group["spec"]  # the HPA owns it

    cluster.patch(f"{MD_PATH}/scaled", {"spec": {"resources": {"nodes": 1}}})
    wait_for(
        lambda: (
            (h := cluster.get(f"{HPAS}/scaled"))
            and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        ),
        what="the HPA to follow the Deployment",
    )


def test_deleted_leader_worker_set_is_restored(lws_installed: Cluster) -> None:
    cluster = lws_installed
    cluster.create_md("restored", TWO_NODES)
    first = cluster.wait_get(f"{LWS_PATH}/restored")
    assert cluster.http.delete(f"{LWS_PATH}/restored").status_code == 200
    cluster.wait_recreated(f"{LWS_PATH}/restored", first)
