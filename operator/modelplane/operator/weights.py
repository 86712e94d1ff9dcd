"""Weights before GPUs: run the fetch Job, read what it cached, judge the GPU fit, gate the rollout.

`sync_weights` is called by each reconcile. When the model is pre-fetched (`needs_fetch`), it
keeps one Job `<name>-fetch` per source hash (a new model, revision or adapter replaces the Job),
copies the finished pod's termination message (the fetch summary) onto the Job as an annotation
(pods are garbage-collected, the Job stays as the record of the cache), and returns the
WeightsCached and GPUFit conditions and whether the serving Deployment may be created or updated.

Design: the operator never talks to the Hub. The GPU-fit facts (config.json, weight bytes by
dtype) come from the Job that already has the network and the files; before the Job finished,
or for sources without a Job (pvc://, file://, s3:// without a cache), GPUFit is Unknown and
holds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelplane.operator import fetch_progress
from modelplane.operator.fetch_sources import fetch_sources, needs_fetch, source_hash
from modelplane.operator.gpu_fit import (
    FitRequest,
    check_fit,
    product_memory_bytes,
    quantity_bytes,
)
from modelplane.operator.kube import Kube
from modelplane.operator.resources import ChildRef
from modelplane.operator.resources.fetch_job import (
    JOB_NAME_LABEL,
    SOURCE_HASH_LABEL,
    SUMMARY_ANNOTATION,
    build_fetch_job,
    fetch_job_name,
)
from modelplane.operator.resources.meta import Owner
from modelplane.operator.spec import ModelDeploymentSpec

WEIGHTS_CACHED = "WeightsCached"
GPU_FIT = "GPUFit"
# What this module asks of the API server (tests/chart/test_chart_rbac.py grants exactly this).
API_USES: dict[tuple[str, str], set[str]] = {
    ("batch", "jobs"): {"get", "create", "patch", "delete", "list", "watch"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},  # the fetch pod's progress lines (fetch_progress.py)
}


@dataclass
class WeightsOutcome:
    """Conditions as (type, status, reason, message) and whether the Deployment may roll out."""

    conditions: list[tuple[str, str, str, str]] = field(default_factory=list)
    rollout_allowed: bool = True
    hold_reason: tuple[str, str] | None = None  # (reason, message) for Ready while held
    fetching: bool = False  # the fetch Job runs: its progress is refreshed periodically


def fit_request(spec: ModelDeploymentSpec) -> FitRequest:
    gpu = spec.resources.gpu
    engine = spec.engine
    memory = quantity_bytes(gpu.memory) if gpu.memory else None
    if memory is None and gpu.product:
        memory = product_memory_bytes(gpu.product)
    label = gpu.product or ("resources.gpu.memory" if gpu.memory else "")
    return FitRequest(
        tensor_parallel=engine.tensor_parallel_size,
        pipeline_parallel=engine.pipeline_parallel_size,
        max_model_len=engine.max_model_len,
        dtype=engine.dtype,
        kv_cache_dtype=engine.kv_cache_dtype,
        quantization=engine.quantization,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        gpu_memory_bytes=memory,
        gpu_label=label,
    )


def gpu_fit_condition(
    spec: ModelDeploymentSpec, summary: dict[str, Any] | None
) -> tuple[str, str, str, str]:
    if spec.gpus_per_replica == 0:
        return (GPU_FIT, "Unknown", "NoGPUs", "resources.gpu.count is 0: the model runs on CPU")
    if summary is None:
        why = (
            "waiting for the fetch Job to report the model's config.json and weight sizes"
            if needs_fetch(spec)
            else "no model metadata: only an hf:// or s3:// model with a cache (a fetch Job)"
            " reports it"
        )
        return (GPU_FIT, "Unknown", "ModelMetadataUnknown", why)
    verdict = check_fit(summary.get("model"), fit_request(spec))
    return (GPU_FIT, verdict.status, verdict.reason, verdict.message)


def job_state(job: dict[str, Any]) -> str:
    """Complete, Failed or Running, from the Job's conditions and counters."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    if int(status.get("succeeded") or 0) > 0:
        return "Complete"
    return "Running"


def _terminated_messages(kube: Kube, owner: Owner, job_name: str) -> list[dict[str, Any]]:
    """The fetch container's termination messages (JSON), newest pod last."""
    pods = [
        pod
        for pod in kube.list("v1", "Pod", owner.namespace, f"{JOB_NAME_LABEL}={job_name}")
        if (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job_name
    ]
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    messages = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            message = str(
                ((container.get("state") or {}).get("terminated") or {}).get("message") or ""
            )
            try:
                parsed = json.loads(message) if message else None
            except ValueError:
                parsed = {"error": message.strip()[-500:]}  # FallbackToLogsOnError: a log tail
            if isinstance(parsed, dict):
                messages.append(parsed)
    return messages


def _summary_text(summary: dict[str, Any], sources: list[str]) -> str:
    size = f"{int(summary.get('bytes', 0)) / 1024**3:.1f} GiB"
    commit = str(summary.get("commit", ""))[:12]
    what = f"{summary.get('source', sources[0])}@{commit}"
    if summary.get("noop"):
        return f"{what}: {size} already in the cache"
    return f"{what}: {size} in {summary.get('files', '?')} files fetched in {summary.get('seconds', '?')} s"


def sync_weights(
    kube: Kube,
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    default_image: str,
    monitor: fetch_progress.FetchProgressMonitor,
) -> WeightsOutcome:
    """Bring the fetch Job to the spec and report; the only API calls of the weights feature."""
    outcome = _sync_weights(kube, owner, spec, default_image, monitor)
    monitor.note(owner.namespace, owner.name, fetch_job_name(owner), outcome.fetching)
    return outcome


def _sync_weights(
    kube: Kube,
    owner: Owner,
    spec: ModelDeploymentSpec,
    default_image: str,
    monitor: fetch_progress.FetchProgressMonitor,
) -> WeightsOutcome:
    name = fetch_job_name(owner)
    if not needs_fetch(spec):
        kube.delete(ChildRef("batch/v1", "Job", name), owner.namespace, owner_uid=owner.uid)
        fit = gpu_fit_condition(spec, None)
        return WeightsOutcome(conditions=[fit])
    desired = build_fetch_job(owner, spec, default_image=default_image)
    job = kube.get("batch/v1", "Job", owner.namespace, name)
    if job is not None and job["metadata"].get("labels", {}).get(SOURCE_HASH_LABEL) != source_hash(
        spec
    ):
        # A Job's pod template is immutable: a new source means a new Job of the same name.
        kube.delete(ChildRef("batch/v1", "Job", name), owner.namespace, owner_uid=owner.uid)
        job = None
    if job is None:
        job = kube.create(desired)
    state = job_state(job)
    sources = fetch_sources(spec)
    outcome = WeightsOutcome(rollout_allowed=False)
    summary: dict[str, Any] | None = None
    if state == "Complete":
        annotation = (job["metadata"].get("annotations") or {}).get(SUMMARY_ANNOTATION)
        if annotation:
            summary = json.loads(annotation)
        else:
            found = [m for m in _terminated_messages(kube, owner, name) if "commit" in m]
            if found:
                summary = found[-1]
                patch = {"metadata": {"annotations": {SUMMARY_ANNOTATION: json.dumps(summary)}}}
                kube.patch("batch/v1", "Job", owner.namespace, name, patch)
        message = (
            _summary_text(summary, sources)
            if summary
            else f"Job {name} succeeded (its summary was not readable)"
        )
        outcome.conditions.append((WEIGHTS_CACHED, "True", "Fetched", message))
        outcome.rollout_allowed = True
    elif state == "Failed":
        errors = [m["error"] for m in _terminated_messages(kube, owner, name) if "error" in m]
        detail = errors[-1] if errors else "see kubectl logs job/" + name
        message = f"Job {name} failed: {detail}"
        outcome.conditions.append((WEIGHTS_CACHED, "False", "FetchFailed", message))
        outcome.hold_reason = ("FetchFailed", message)
    else:
        progress = monitor.progress(kube, owner.namespace, name)
        what = f"fetching {progress.text()}" if progress else f"downloading {', '.join(sources)}"
        message = f"Job {name}: {what}; serving pods start when it succeeds"
        outcome.conditions.append((WEIGHTS_CACHED, "Unknown", "Fetching", message))
        # Ready names the wait, not the bytes: one condition changes as the download goes on.
        outcome.hold_reason = (
            "WaitingForWeights",
            f"Job {name} is fetching {', '.join(sources)} (progress in WeightsCached);"
            " serving pods start when it succeeds",
        )
        outcome.fetching = True
    fit = gpu_fit_condition(spec, summary)
    outcome.conditions.append(fit)
    if fit[1] == "False" and spec.resources.gpu.fit_check == "Enforce":
        outcome.rollout_allowed = False
        outcome.hold_reason = (
            "DoesNotFitGPUs",
            f"{fit[3]} (resources.gpu.fitCheck: Warn rolls out anyway)",
        )
    return outcome
