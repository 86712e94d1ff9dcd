"""The Job `<name>-fetch`: fills the model cache once, before any serving pod starts.

It runs the server image's fetch command (`python3 -m modelplane.server.fetch`) with the cache
volume mounted read-write: hf:// sources into the Hugging Face cache (HF_HOME), an s3:// model
under /cache/s3/<bucket>/<prefix>. Its last words (the summary JSON: commit, bytes, duration, the model's
config and weight bytes) are the container's termination message, which the operator copies onto
the Job as an annotation: the Job is the durable record of what is in the cache.
"""

from __future__ import annotations

from typing import Any

from modelplane.operator.fetch_sources import S3_CACHE_DIR, fetch_sources, source_hash
from modelplane.operator.resources.deployment import (
    CACHE_DIR,
    HF_HOME,
    build_volumes,
    container_security_context,
    pod_security_context,
)
from modelplane.operator.resources.meta import Owner, child, labels
from modelplane.operator.spec import ModelDeploymentSpec

SOURCE_HASH_LABEL = "modelplane.io/source-hash"
SUMMARY_ANNOTATION = "modelplane.io/fetch-summary"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
CONTAINER_NAME = "fetch"
# A pod evicted mid-download is replaced and resumes where it stopped; 6 tries, then Failed.
BACKOFF_LIMIT = 6


def fetch_job_name(owner: Owner) -> str:
    return f"{owner.name}-fetch"


def build_fetch_job(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": HF_HOME},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if spec.model.hf_token_secret_ref is not None:
        ref = spec.model.hf_token_secret_ref
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    # The hub's and S3's settings (HF_ENDPOINT, AWS_ENDPOINT_URL, AWS_REGION, AWS_* keys...).
    env += [
        {"name": v.name, "value": v.value}
        for v in spec.engine.env
        if v.name.startswith(("HF_", "AWS_"))
    ]
    cache_volume = next(v for v in build_volumes(owner, spec) if v["name"] == "cache")
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or default_image,
        "command": ["python3", "-m", "modelplane.server.fetch", *fetch_sources(spec)],
        "args": ["--summary-file", "/dev/termination-log"]
        + (["--s3-dir", S3_CACHE_DIR] if spec.uri_scheme == "s3" else []),
        "env": env,
        "volumeMounts": [
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # Hashing streams 8 MiB chunks; downloads run four files at a time.
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        # If the command dies before writing its summary, the log tail explains why.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.uri_scheme == "s3" and spec.model.aws_credentials_secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": spec.model.aws_credentials_secret_ref.name}}]
    pod_labels = labels(owner, "fetch")
    job_spec = {
        "backoffLimit": BACKOFF_LIMIT,
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": pod_security_context(),
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [cache_volume, {"name": "tmp", "emptyDir": {}}],
                **({"nodeSelector": dict(spec.node_selector)} if spec.node_selector else {}),
                **(
                    {"tolerations": [dict(t) for t in spec.tolerations]} if spec.tolerations else {}
                ),
            },
        },
    }
    job = child("batch/v1", "Job", fetch_job_name(owner), owner, "fetch", "spec", job_spec)
    job["metadata"]["labels"][SOURCE_HASH_LABEL] = source_hash(spec)
    return job
