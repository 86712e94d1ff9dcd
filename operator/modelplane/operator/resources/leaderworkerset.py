"""The LeaderWorkerSet `<name>` that serves a model larger than one node (`resources.nodes` > 1).

One replica is a group of `nodes` pods (kubernetes-sigs/lws, `leaderworkerset.x-k8s.io/v1`):
the leader runs `modelplane-server` (the OpenAI API and the engine's node rank 0), each worker
runs `modelplane-server --headless` (its share of the engine, vLLM's multiprocessing backend
across nodes). LWS injects `LWS_LEADER_ADDRESS` and `LWS_WORKER_INDEX` into every container;
the kubelet expands `$(VAR)` in the arguments, as in vLLM's own LWS example. The pods are the
Deployment's pod template (GPUs, /dev/shm, cache, HF token, security context); only the role
differs.
"""

from __future__ import annotations

import copy
from typing import Any

from modelplane.operator.resources.deployment import CONTAINER_NAME, build_pod_template
from modelplane.operator.resources.meta import Owner, child, labels, selector_labels
from modelplane.operator.spec import ModelDeploymentSpec

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
PLURAL = "leaderworkersets"
CRD_NAME = f"{PLURAL}.leaderworkerset.x-k8s.io"
# LWS's own pod label: "0" on every group's leader, 1..size-1 on its workers.
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
# vLLM's torch.distributed rendezvous on the leader (torch's customary port).
MASTER_PORT = 29500
LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"
# LeaderCreated, not LeaderReady: the leader is only Ready once its engine runs, and its engine
# only runs once every worker has joined the rendezvous; LeaderReady would wait forever.
STARTUP_POLICY = "LeaderCreated"
# A lost worker takes its share of the model with it: the whole group restarts together.
RESTART_POLICY = "RecreateGroupOnPodRestart"
PROMETHEUS_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")


def serving_selector(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, str]:
    """The pods that answer HTTP: every server pod, or only the group leaders of a multi-node model."""
    if not spec.multi_node:
        return selector_labels(owner)
    return {**selector_labels(owner), WORKER_INDEX_LABEL: "0"}


def multi_node_flags(spec: ModelDeploymentSpec, node_rank: str) -> list[str]:
    """vLLM's multi-node flags; every pod of a group passes the same ones but its rank."""
    return [
        "--nnodes",
        str(spec.resources.nodes),
        "--node-rank",
        node_rank,
        "--master-addr",
        LEADER_ADDRESS,
        "--master-port",
        str(MASTER_PORT),
    ]


def build_leader_template(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    """The Deployment's pod, node rank 0: it serves the API and drives the workers."""
    template = build_pod_template(owner, spec, default_image=default_image)
    container = _server_container(template)
    container["args"] = [*container["args"], *multi_node_flags(spec, "0")]
    return template


def build_worker_template(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    """The same pod headless: no port, no HTTP probes, no scrape annotations.

    A worker has no endpoint to probe; its health is the leader's. When a worker dies the
    leader's engine fails its /health (liveness) and RecreateGroupOnPodRestart restarts the
    group; when the leader dies the worker's executor exits and the group restarts likewise.
    """
    template = copy.deepcopy(build_pod_template(owner, spec, default_image=default_image))
    template["metadata"]["labels"] = labels(owner, "worker")
    annotations = {
        k: v
        for k, v in template["metadata"]["annotations"].items()
        if k not in PROMETHEUS_ANNOTATIONS
    }
    if annotations:
        template["metadata"]["annotations"] = annotations
    else:
        del template["metadata"]["annotations"]
    container = _server_container(template)
    container["args"] = ["--headless", *container["args"], *multi_node_flags(spec, WORKER_INDEX)]
    for key in ("ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(key, None)
    return template


def build_leader_worker_set(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    lws_spec: dict[str, Any] = {
        "startupPolicy": STARTUP_POLICY,
        "leaderWorkerTemplate": {
            "size": spec.resources.nodes,
            "restartPolicy": RESTART_POLICY,
            "leaderTemplate": build_leader_template(owner, spec, default_image=default_image),
            "workerTemplate": build_worker_template(owner, spec, default_image=default_image),
        },
        # Like the Deployment: no surge (a new group needs GPUs an old one holds), one group
        # replaced at a time.
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxSurge": 0, "maxUnavailable": 1},
        },
    }
    if spec.autoscaling is None:  # else the autoscaler owns .spec.replicas (scale subresource)
        lws_spec["replicas"] = spec.replicas
    return child(API_VERSION, KIND, owner.name, owner, "server", "spec", lws_spec)


def _server_container(template: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in template["spec"]["containers"] if c["name"] == CONTAINER_NAME)
