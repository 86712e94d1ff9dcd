"""The serving Deployment `<name>`: one `modelplane-server` container with TP x PP GPUs."""

from __future__ import annotations

from typing import Any

from modelplane import contract
from modelplane.operator import engine_args
from modelplane.operator.fetch_sources import needs_fetch
from modelplane.operator.resources.meta import Owner, child, labels, selector_labels
from modelplane.operator.resources.pvc import cache_claim_name
from modelplane.operator.spec import ModelDeploymentSpec

CONTAINER_NAME = "server"
CACHE_DIR = "/cache"
HF_HOME = f"{CACHE_DIR}/huggingface"
RUN_AS = 1000  # the server image's non-root user; fsGroup makes the cache volume writable

# Startup probe budget: a 70B model is ~140 GB; downloading it at ~100 MB/s and loading it onto
# the GPUs takes 30-40 minutes. 360 x 10 s = 60 minutes before the kubelet gives up on a pod.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 360
# The Deployment itself reports ProgressDeadlineExceeded after the same hour.
PROGRESS_DEADLINE_SECONDS = STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD


def pod_security_context() -> dict[str, Any]:
    """Every modelplane pod (server and fetch Job) runs as the image's non-root user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The Pod Security Standards' restricted profile, with a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_deployment(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner)},
        # No surge: a new pod needs GPUs an old one still holds; with no spare GPU in the
        # cluster maxSurge>0 would deadlock the rollout. Replace one pod at a time instead.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        },
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "revisionHistoryLimit": 3,
        "template": build_pod_template(owner, spec, default_image=default_image),
    }
    if spec.autoscaling is None:  # else the autoscaler owns .spec.replicas
        deployment_spec["replicas"] = spec.replicas
    return child("apps/v1", "Deployment", owner.name, owner, "server", "spec", deployment_spec)


def build_pod_template(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    gpus = spec.gpus_per_pod
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(contract.SERVER_PORT),
        "prometheus.io/path": contract.METRICS_PATH,
        **spec.pod_annotations,
    }
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": engine_args.TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        # The server never calls the Kubernetes API: no token in the pod to leak.
        "automountServiceAccountToken": False,
        "containers": [build_container(owner, spec, default_image=default_image)],
        "volumes": build_volumes(owner, spec),
    }
    node_selector = dict(spec.node_selector)
    if gpus and spec.resources.gpu.product:
        node_selector["nvidia.com/gpu.product"] = spec.resources.gpu.product
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = [dict(t) for t in spec.tolerations]
    if gpus:
        tolerations.insert(
            0,
            {"key": spec.resources.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"},
        )
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.affinity:
        pod["affinity"] = dict(spec.affinity)
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    return {
        "metadata": {"labels": labels(owner, "server"), "annotations": annotations},
        "spec": pod,
    }


def build_container(
    owner: Owner, spec: ModelDeploymentSpec, *, default_image: str
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or default_image,
        "command": ["modelplane-server"],
        "args": engine_args.engine_flags(spec, owner.name),
        "ports": [{"name": "http", "containerPort": contract.SERVER_PORT, "protocol": "TCP"}],
        "env": build_env(spec),
        "resources": build_resources(spec),
        "volumeMounts": build_volume_mounts(spec),
        "startupProbe": _probe(
            contract.READY_PATH, STARTUP_PERIOD_SECONDS, STARTUP_FAILURE_THRESHOLD
        ),
        "readinessProbe": _probe(contract.READY_PATH, 5, 3),
        "livenessProbe": _probe(contract.HEALTH_PATH, 15, 4),
        "lifecycle": {"preStop": {"sleep": {"seconds": engine_args.PRE_STOP_SLEEP_SECONDS}}},
        "securityContext": container_security_context(),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    secret = spec.model.aws_credentials_secret_ref
    if secret is not None and spec.uri_scheme == "s3" and not needs_fetch(spec):
        # Streamed from the bucket (no cache): the pods need the keys; with a cache only the Job.
        container["envFrom"] = [{"secretRef": {"name": secret.name}}]
    return container


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def build_env(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """What libraries read from the environment (server settings are flags, see engine_args).

    Sorted by name so the pod template is stable.
    """
    env: dict[str, dict[str, Any]] = {
        "HF_HOME": {"value": HF_HOME},
        "HOME": {"value": "/tmp"},  # read-only root filesystem: libraries write under $HOME
        # vLLM's torch.compile cache (with inductor's and Triton's caches inside it) lives under
        # VLLM_CACHE_ROOT: on the cache volume, a restart or a new replica on a persistent
        # cache loads the compiled model instead of compiling it again.
        "VLLM_CACHE_ROOT": {"value": f"{CACHE_DIR}/vllm"},
        # CUDA's JIT cache of kernels built from PTX (default ~/.nv/ComputeCache, lost in /tmp).
        "CUDA_CACHE_PATH": {"value": f"{CACHE_DIR}/nv"},
    }
    if spec.model.hf_token_secret_ref is not None:
        ref = spec.model.hf_token_secret_ref
        env["HF_TOKEN"] = {"valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    if needs_fetch(spec):
        # The fetch Job filled the cache: never download, and the cache is mounted read-only.
        env["HF_HUB_OFFLINE"] = {"value": "1"}
        env["VLLM_CACHE_ROOT"] = {"value": "/tmp/vllm"}
    for var in spec.engine.env:
        env[var.name] = {"value": var.value}
    return [{"name": name, **value} for name, value in sorted(env.items())]


def build_resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    requests: dict[str, Any] = {k: str(v) for k, v in spec.resources.requests.items()}
    limits: dict[str, Any] = {k: str(v) for k, v in spec.resources.limits.items()}
    gpus = spec.gpus_per_pod
    if gpus:
        limits[spec.resources.gpu.resource_name] = str(gpus)
        requests[spec.resources.gpu.resource_name] = str(gpus)
    result: dict[str, Any] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def build_volumes(owner: Owner, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    cache: dict[str, Any]
    if spec.cache.persistent_volume_claim:
        cache = {"persistentVolumeClaim": {"claimName": spec.cache.persistent_volume_claim}}
    elif spec.cache.size:
        cache = {"persistentVolumeClaim": {"claimName": cache_claim_name(owner)}}
    else:
        cache = {"emptyDir": {}}
    volumes: list[dict[str, Any]] = [
        {"name": "cache", **cache},
        {"name": "tmp", "emptyDir": {}},
    ]
    if spec.parallel_size > 1:
        # NCCL and vLLM's workers exchange tensors through /dev/shm; the default 64 MiB is too small.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
    claim = engine_args.model_claim(spec)
    if claim:
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    if spec.auth.api_key_secret_ref is not None:
        ref = spec.auth.api_key_secret_ref
        volumes.append(
            {
                "name": "api-keys",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": "api-keys"}],
                    "defaultMode": 0o440,
                },
            }
        )
    return volumes


def build_volume_mounts(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {
            "name": "cache",
            "mountPath": CACHE_DIR,
            **({"readOnly": True} if needs_fetch(spec) else {}),
        },
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if spec.parallel_size > 1:
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    if engine_args.model_claim(spec):
        mounts.append({"name": "model", "mountPath": engine_args.MODELS_DIR, "readOnly": True})
    if spec.auth.api_key_secret_ref is not None:
        mounts.append({"name": "api-keys", "mountPath": engine_args.API_KEYS_DIR, "readOnly": True})
    return mounts
