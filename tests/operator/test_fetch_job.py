"""The fetch Job builder, what the serving pods do with a pre-fetched cache, and the weights gate."""

from __future__ import annotations

from typing import Any

import pytest

from modelplane.operator.fetch_sources import fetch_sources, needs_fetch, source_hash
from modelplane.operator.gpu_fit import GiB, MiB
from modelplane.operator.resources.deployment import build_deployment
from modelplane.operator.resources.fetch_job import SOURCE_HASH_LABEL, build_fetch_job
from modelplane.operator.resources.meta import Owner
from modelplane.operator.spec import SpecError, parse_spec
from modelplane.operator.weights import fit_request, gpu_fit_condition, job_state

OWNER = Owner(name="llama", namespace="models", uid="uid-1")
IMAGE = "registry.example/modelplane-server:1"


def spec(**fields: Any) -> Any:
    return parse_spec({"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}, **fields})


def test_fetch_job_runs_the_fetch_command_on_the_cache_claim() -> None:
    s = spec(
        cache={"size": "100Gi"},
        model={
            "uri": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f",
            "hfTokenSecretRef": {"name": "hf", "key": "token"},
        },
        adapters=[{"name": "sql", "uri": "hf://org/sql-lora"}],
    )
    job = build_fetch_job(OWNER, s, default_image=IMAGE)
    assert job["metadata"]["name"] == "llama-fetch"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["labels"][SOURCE_HASH_LABEL] == source_hash(s)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    assert container["command"] == [
        "python3",
        "-m",
        "modelplane.server.fetch",
        "hf://meta-llama/Llama-3.1-8B-Instruct@0e9e39f",
        "hf://org/sql-lora",
    ]
    assert container["args"] == ["--summary-file", "/dev/termination-log"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_HOME"]["value"] == "/cache/huggingface"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]  # read-write
    assert pod["volumes"][0] == {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": "llama-cache"},
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cache": {"size": "10Gi"}}, True),
        ({"cache": {"persistentVolumeClaim": "shared-models"}}, True),
        ({}, False),  # no cache: each pod downloads into its emptyDir, as before
        ({"model": {"uri": "s3://bucket/llama"}, "cache": {"size": "10Gi"}}, True),
        ({"model": {"uri": "s3://bucket/llama"}}, False),  # no cache: vLLM streams the bucket
        ({"model": {"uri": "pvc://models/llama"}, "cache": {"size": "10Gi"}}, False),
    ],
)
def test_which_specs_prefetch(fields: dict[str, Any], expected: bool) -> None:
    assert needs_fetch(spec(**fields)) is expected


def test_an_s3_model_with_a_cache_is_fetched_and_served_from_it() -> None:
    s = parse_spec(
        {
            "model": {
                "uri": "s3://models/llama/8b",
                "awsCredentialsSecretRef": {"name": "s3-keys"},
            },
            "cache": {"size": "100Gi"},
            "engine": {
                "env": [
                    {"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"},
                    {"name": "AWS_REGION", "value": "eu-west-1"},
                    {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
                ]
            },
        }
    )
    container = build_fetch_job(OWNER, s, default_image=IMAGE)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"][-1] == "s3://models/llama/8b"
    assert container["args"] == ["--summary-file", "/dev/termination-log", "--s3-dir", "/cache/s3"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (
        env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000" and env["AWS_REGION"] == "eu-west-1"
    )
    assert "VLLM_LOGGING_LEVEL" not in env  # the engine's own settings stay in the serving pod
    assert container["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    server = build_deployment(OWNER, s, default_image=IMAGE)["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = server["args"]
    assert args[args.index("--model") + 1] == "/cache/s3/models/llama/8b"
    assert "--load-format" not in args  # a local directory, not the Run:ai streamer
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in server["volumeMounts"]
    assert "envFrom" not in server  # the weights are local: the serving pods hold no S3 keys
    streamed = parse_spec(
        {"model": {"uri": "s3://models/llama/8b", "awsCredentialsSecretRef": {"name": "s3-keys"}}}
    )
    streamer = build_deployment(OWNER, streamed, default_image=IMAGE)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert streamer["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
    streamed_args = streamer["args"]
    assert streamed_args[streamed_args.index("--model") + 1] == "s3://models/llama/8b"
    assert "runai_streamer" in streamed_args


def test_source_hash_follows_model_revision_and_adapters_only() -> None:
    base = spec(cache={"size": "10Gi"})
    assert source_hash(base) == source_hash(spec(cache={"size": "10Gi"}, replicas=3))
    revised = spec(cache={"size": "10Gi"}, model={"uri": base.model.uri, "revision": "v2"})
    assert source_hash(revised) != source_hash(base)
    with_adapter = spec(cache={"size": "10Gi"}, adapters=[{"name": "a", "uri": "hf://o/a"}])
    assert fetch_sources(with_adapter)[1:] == ["hf://o/a"]
    assert source_hash(with_adapter) != source_hash(base)


def test_serving_pods_read_a_prefetched_cache_offline_and_read_only() -> None:
    pod = build_deployment(OWNER, spec(cache={"size": "10Gi"}), default_image=IMAGE)["spec"][
        "template"
    ]["spec"]
    server = pod["containers"][0]
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in server["volumeMounts"]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CACHE_ROOT"].startswith("/tmp/")  # vLLM's compile cache stays writable
    plain = build_deployment(OWNER, spec(), default_image=IMAGE)["spec"]["template"]["spec"]
    plain_env = {e["name"] for e in plain["containers"][0]["env"]}
    assert "HF_HUB_OFFLINE" not in plain_env


def test_read_write_once_cache_needs_a_single_replica() -> None:
    assert spec(cache={"size": "1Gi", "accessMode": "ReadWriteOnce"}).replicas == 1
    with pytest.raises(SpecError) as error:
        spec(cache={"size": "1Gi", "accessMode": "ReadWriteOnce"}, autoscaling={"maxReplicas": 4})
    assert error.value.field == "spec.cache.accessMode"


def test_job_state_reads_conditions_and_counters() -> None:
    assert job_state({"status": {}}) == "Running"
    assert job_state({"status": {"succeeded": 1}}) == "Complete"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assert job_state(failed) == "Failed"


def test_fit_request_takes_memory_over_the_product_table() -> None:
    by_product = fit_request(spec(resources={"gpu": {"product": "NVIDIA-L4"}}))
    assert by_product.gpu_memory_bytes == 23_034 * MiB
    override = fit_request(spec(resources={"gpu": {"product": "NVIDIA-L4", "memory": "24Gi"}}))
    assert override.gpu_memory_bytes == 24 * GiB
    unknown = fit_request(spec(resources={"gpu": {"product": "Acme-X1"}}))
    assert unknown.gpu_memory_bytes is None


def test_gpu_fit_is_unknown_without_facts_or_gpus() -> None:
    assert gpu_fit_condition(spec(), None)[1:3] == ("Unknown", "ModelMetadataUnknown")
    cpu = spec(resources={"gpu": {"count": 0}})
    assert gpu_fit_condition(cpu, None)[1:3] == ("Unknown", "NoGPUs")
