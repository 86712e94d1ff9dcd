"""The Job controller's part, played by tests: finish a fetch Job the way Kubernetes would.

The emulator runs no controllers. A real Job controller starts a pod labelled
`batch.kubernetes.io/job-name`, the kubelet records the container's termination message in
the pod's status, and the Job controller sets the Job's Complete or Failed condition; these
helpers write those same objects through the fake API.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.operator.operator_process import JOBS, NS, Cluster

PODS = f"/api/v1/namespaces/{NS}/pods"


def fetch_pod(job: dict[str, Any], phase: str, state: dict[str, Any]) -> dict[str, Any]:
    job_name = job["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job_name}-{uuid.uuid4().hex[:5]}",
            "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job_name},
        },
        "spec": job["spec"]["template"]["spec"],
        "status": {"phase": phase, "containerStatuses": [{"name": "fetch", "state": state}]},
    }


def start_fetch_pod(cluster: Cluster, md_name: str) -> str:
    """The Job controller starts the Job's pod and the kubelet its container: the pod's name."""
    job = cluster.wait_get(f"{JOBS}/{md_name}-fetch")
    pod = fetch_pod(job, "Running", {"running": {"startedAt": "2026-11-29T17:00:00Z"}})
    response = cluster.http.post(PODS, json=pod)
    assert response.status_code in (200, 201), response.text
    cluster.patch(f"{JOBS}/{md_name}-fetch/status", {"status": {"active": 1}})
    return str(pod["metadata"]["name"])


def finish_fetch_job(
    cluster: Cluster,
    md_name: str,
    message: dict[str, Any],
    condition: str,
    pod_name: str | None = None,
) -> None:
    """The pod's container terminates with `message` (a new pod unless `pod_name` runs)."""
    job_name = f"{md_name}-fetch"
    job = cluster.wait_get(f"{JOBS}/{job_name}")
    terminated = {
        "terminated": {
            "exitCode": 0 if condition == "Complete" else 1,
            "message": json.dumps(message),
        }
    }
    phase = "Succeeded" if condition == "Complete" else "Failed"
    if pod_name is None:
        response = cluster.http.post(PODS, json=fetch_pod(job, phase, terminated))
        assert response.status_code in (200, 201), response.text
    else:
        status = {"phase": phase, "containerStatuses": [{"name": "fetch", "state": terminated}]}
        cluster.patch(f"{PODS}/{pod_name}/status", {"status": status})
    counter = "succeeded" if condition == "Complete" else "failed"
    cluster.patch(
        f"{JOBS}/{job_name}/status",
        {
            "status": {
                counter: 1,
                "active": 0,
                "conditions": [{"type": condition, "status": "True"}],
            }
        },
    )


def complete_fetch_job(cluster: Cluster, md_name: str, summary: dict[str, Any]) -> None:
    finish_fetch_job(cluster, md_name, summary, "Complete")


def fail_fetch_job(cluster: Cluster, md_name: str, error: str) -> None:
    finish_fetch_job(cluster, md_name, {"error": error}, "Failed")


def fetch_summary(config: dict[str, Any], weight_bytes: dict[str, int]) -> dict[str, Any]:
    """What `python -m modelplane.server.fetch` writes as its termination message."""
    return {
        "source": "hf://org/model",
        "revision": "main",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "files": 7,
        "bytes": sum(weight_bytes.values()) + 20_000_000,
        "noop": False,
        "seconds": 812.5,
        "model": {
            "weightFileBytes": sum(weight_bytes.values()),
            "config": config,
            "weightBytesByDtype": weight_bytes,
        },
    }
