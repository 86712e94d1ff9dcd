"""Weights before GPUs, with the real kopf operator against the fake API server.

The fetch Job `<name>-fetch` is created, the Deployment waits for it, the status follows it,
a model change fetches again, and a GPU-fit verdict of False holds the rollout. The emulator has
no Job controller: tests/operator/fetch_job_controller.py finishes Jobs as Kubernetes would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelplane.operator.resources.fetch_job import SOURCE_HASH_LABEL, SUMMARY_ANNOTATION
from tests.operator.fetch_job_controller import complete_fetch_job, fail_fetch_job, fetch_summary
from tests.operator.operator_process import (
    DEPLOYMENTS,
    JOBS,
    MD_PATH,
    NS,
    Cluster,
    operated_cluster,
    wait_for,
)

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
LLAMA_8B = json.loads((CONFIGS / "llama-3.1-8b-instruct.json").read_text())
LLAMA_70B = json.loads((CONFIGS / "llama-3.1-70b-instruct.json").read_text())
H100 = {"gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with operated_cluster(tmp_path_factory.mktemp("operator")) as cluster:
        yield cluster


def test_fetch_job_gates_the_deployment_and_status_follows_it(cluster: Cluster) -> None:
    cluster.create_md(
        "llama",
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"maxModelLen": 32768},
            "resources": H100,
            "cache": {"size": "100Gi"},
            "autoscaling": {"maxReplicas": 4},
        },
    )
    job = cluster.wait_get(f"{JOBS}/llama-fetch")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "hf://meta-llama/Llama-3.1-8B-Instruct"
    assert container["args"] == ["--summary-file", "/dev/termination-log"]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "llama-cache"
    claim = cluster.wait_get(f"/api/v1/namespaces/{NS}/persistentvolumeclaims/llama-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # four replicas, many nodes

    fetching = cluster.wait_condition("llama", "WeightsCached", "Unknown")
    assert fetching["reason"] == "Fetching" and "llama-fetch" in fetching["message"]
    assert cluster.conditions("llama")["GPUFit"]["status"] == "Unknown"
    ready = cluster.conditions("llama")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "WaitingForWeights")
    time.sleep(1.0)  # the operator had time to make a Deployment: it must not have
    assert cluster.get(f"{DEPLOYMENTS}/llama") is None

    complete_fetch_job(cluster, "llama", fetch_summary(LLAMA_8B, {"BF16": 8_030_261_248 * 2}))
    deployment = cluster.wait_get(f"{DEPLOYMENTS}/llama")
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in server["volumeMounts"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    cached = cluster.wait_condition("llama", "WeightsCached", "True")
    assert cached["reason"] == "Fetched"
    assert "15.0 GiB in 7 files fetched in 812.5 s" in cached["message"]
    fit = cluster.wait_condition("llama", "GPUFit", "True")
    assert fit["message"].startswith(
        "weights 15.0 GiB + KV for 32768 tokens 4.0 GiB + overhead 3.0 GiB per GPU vs 71.7 GiB usable"
    )
    assert cluster.md("llama")["status"]["engine"] == server["args"]  # what the pods run
    summary = json.loads(
        cluster.get(f"{JOBS}/llama-fetch")["metadata"]["annotations"][SUMMARY_ANNOTATION]
    )  # type: ignore[index]
    assert summary["commit"] == "0123456789abcdef0123456789abcdef01234567"

    # A new revision fetches again; the running Deployment keeps its spec meanwhile.
    old_hash = cluster.get(f"{JOBS}/llama-fetch")["metadata"]["labels"][SOURCE_HASH_LABEL]  # type: ignore[index]
    cluster.patch(f"{MD_PATH}/llama", {"spec": {"model": {"revision": "v2"}}})
    new_job = wait_for(
        lambda: (
            (j := cluster.get(f"{JOBS}/llama-fetch"))
            and j["metadata"]["labels"][SOURCE_HASH_LABEL] != old_hash
            and j
        ),
        what="a new fetch Job for revision v2",
    )
    assert new_job["spec"]["template"]["spec"]["containers"][0]["command"][-1].endswith("@v2")
    cluster.wait_condition("llama", "WeightsCached", "Unknown")
    args = container_args(cluster, "llama")
    assert "--revision" not in args
    complete_fetch_job(cluster, "llama", fetch_summary(LLAMA_8B, {"BF16": 8_030_261_248 * 2}))
    wait_for(
        lambda: "--revision" in container_args(cluster, "llama"),
        what="the Deployment to roll out revision v2",
    )


def container_args(cluster: Cluster, name: str) -> list[str]:
    deployment = cluster.get(f"{DEPLOYMENTS}/{name}")
    assert deployment is not None
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_a_model_that_does_not_fit_holds_the_rollout_until_fit_check_warn(
    cluster: Cluster,
) -> None:
    cluster.create_md(
        "big",
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-70B-Instruct"},
            "resources": H100,
            "cache": {"size": "200Gi", "accessMode": "ReadWriteOnce"},
        },
    )
    complete_fetch_job(cluster, "big", fetch_summary(LLAMA_70B, {"BF16": 70_553_706_496 * 2}))
    fit = cluster.wait_condition("big", "GPUFit", "False")
    assert fit["reason"] == "DoesNotFit"
    assert "weights 131.4 GiB" in fit["message"]
    assert "engine.tensorParallelSize 4 fits" in fit["message"]
    ready = cluster.conditions("big")["Ready"]
    assert ready["reason"] == "DoesNotFitGPUs" and "fitCheck: Warn" in ready["message"]
    assert cluster.get(f"{DEPLOYMENTS}/big") is None
    claim = cluster.get(f"/api/v1/namespaces/{NS}/persistentvolumeclaims/big-cache")
    assert claim is not None and claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    cluster.patch(f"{MD_PATH}/big", {"spec": {"resources": {"gpu": {"fitCheck": "Warn"}}}})
    cluster.wait_get(f"{DEPLOYMENTS}/big")
    assert cluster.conditions("big")["GPUFit"]["status"] == "False"  # still reported


def test_a_failed_fetch_is_weights_cached_false_with_the_error(cluster: Cluster) -> None:
    cluster.create_md(
        "typo",
        {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruckt"}, "cache": {"size": "20Gi"}},
    )
    fail_fetch_job(cluster, "typo", "meta-llama/Llama-3.1-8B-Instruckt: 404 Not Found")
    failed = cluster.wait_condition("typo", "WeightsCached", "False")
    assert failed["reason"] == "FetchFailed"
    assert "404 Not Found" in failed["message"]
    assert cluster.md("typo")["status"]["phase"] == "Pending"
    assert cluster.get(f"{DEPLOYMENTS}/typo") is None


def test_without_a_cache_pods_download_themselves_and_no_job_is_made(cluster: Cluster) -> None:
    cluster.create_md("plain", {"model": {"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}})
    deployment = cluster.wait_get(f"{DEPLOYMENTS}/plain")
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "HF_HUB_OFFLINE" not in env
    assert cluster.get(f"{JOBS}/plain-fetch") is None
    assert "WeightsCached" not in cluster.conditions("plain")


def test_an_s3_model_with_a_cache_is_fetched_then_served_from_the_cache(cluster: Cluster) -> None:
    cluster.create_md(
        "bucket",
        {
            "model": {
                "uri": "s3://models/llama/8b",
                "awsCredentialsSecretRef": {"name": "s3-keys"},
            },
            "engine": {"env": [{"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"}]},
            "resources": H100,
            "cache": {"size": "100Gi"},
        },
    )
    job = cluster.wait_get(f"{JOBS}/bucket-fetch")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "s3://models/llama/8b"
    assert container["args"][-2:] == ["--s3-dir", "/cache/s3"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"} in container["env"]
    cluster.wait_condition("bucket", "WeightsCached", "Unknown")
    assert cluster.get(f"{DEPLOYMENTS}/bucket") is None

    summary = fetch_summary(LLAMA_8B, {"BF16": 8_030_261_248 * 2})
    summary.update(source="s3://models/llama/8b", revision="", commit="9f" * 20)
    complete_fetch_job(cluster, "bucket", summary)
    deployment = cluster.wait_get(f"{DEPLOYMENTS}/bucket")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][server["args"].index("--model") + 1] == "/cache/s3/models/llama/8b"
    assert "--load-format" not in server["args"] and "envFrom" not in server
    cached = cluster.wait_condition("bucket", "WeightsCached", "True")
    assert cached["message"].startswith("s3://models/llama/8b@9f9f9f9f9f9f: 15.0 GiB in 7 files")
    assert cluster.wait_condition("bucket", "GPUFit", "True")["reason"] == "Fits"
