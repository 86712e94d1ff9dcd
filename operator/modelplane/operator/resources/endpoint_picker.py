"""The endpoint picker (llm-d router EPP) of one InferencePool: config, RBAC, Service, Deployment.

Rendered after the upstream charts (llm-d-router `config/charts/routerlib`, v0.10.0): ext-proc on
gRPC 9002, gRPC health on 9003, metrics on 9090, `--pool-name/--pool-namespace`, the config file
from a ConfigMap, `Recreate` rollouts, leader election only with more than one replica. Its pods
carry their own `app.kubernetes.io/name`, so neither the server Service nor the pool selects them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from modelplane import contract
from modelplane.operator.resources.meta import (
    DEPLOYMENT_LABEL,
    MANAGED_BY,
    Owner,
    child,
    content_hash,
)
from modelplane.operator.spec import ModelDeploymentSpec, RoutingSpec

APP_NAME = "modelplane-endpoint-picker"
COMPONENT = "endpoint-picker"
GRPC_PORT = 9002  # ext-proc: the gateway asks the picker for a pod here (InferencePool ref)
HEALTH_PORT = 9003
METRICS_PORT = 9090
CONFIG_DIR = "/config"
CONFIG_FILE = "epp-config.yaml"
CONFIG_HASH_ANNOTATION = "modelplane.io/config-hash"
POOL_GROUP = "inference.networking.k8s.io"
LEADER_ELECTION_SUFFIX = "-leader-election"
# Conservatively the longest grace period of a pool's pods (as upstream), so a picker that stops
# still answers for requests the gateway already sent it.
TERMINATION_GRACE_SECONDS = 130
# Sized after KServe's picker (upstream's default asks 8 CPUs): flow control buffers request
# bodies while a pool has no ready pod, so memory is bounded, CPU is not.
RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}}
# The EPP's own metrics (llm_d_epp_* since llm-d router v0.9; the deprecated inference_pool_* and
# inference_objective_* twins are still emitted). KEDA wakes a pool at zero on these.
QUEUED_METRIC = "llm_d_epp_flow_control_queue_size"  # label inference_pool = the pool name
RUNNING_METRIC = "llm_d_epp_request_running"  # per picker; one picker serves one pool


def picker_name(owner: Owner) -> str:
    """`<name>-epp`, shortened with a hash when it would not fit a Service name (63)."""
    name = f"{owner.name}-epp"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(owner.name.encode()).hexdigest()[:8]
    return f"{owner.name[:50]}-{digest}-epp"


def picker_selector_labels(owner: Owner) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": owner.name}


def picker_labels(owner: Owner) -> dict[str, str]:
    return {
        **picker_selector_labels(owner),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: owner.name,
    }


def _routing(spec: ModelDeploymentSpec) -> RoutingSpec:
    if spec.routing is None:
        raise ValueError("spec.routing is not set")
    return spec.routing


def _picker_child(
    api_version: str, kind: str, name: str, owner: Owner, key: str, body: Any
) -> dict[str, Any]:
    manifest = child(api_version, kind, name, owner, COMPONENT, key, body)
    manifest["metadata"]["labels"] = picker_labels(owner)
    return manifest


def picker_config(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The EndpointPickerConfig: upstream's scorers plus LoRA affinity, and flow control on.

    Flow control holds requests in the picker while the pool has no ready pod (scale from zero);
    their TTL is the route's request timeout, so a request waits as long as its client may.
    """
    routing = _routing(spec)
    return {
        "apiVersion": "llm-d.ai/v1alpha1",
        "kind": "EndpointPickerConfig",
        "featureGates": ["flowControl"],
        "plugins": [
            {"type": "queue-scorer"},
            {"type": "kv-cache-utilization-scorer"},
            {"type": "prefix-cache-scorer"},
            {"type": "lora-affinity-scorer"},
            {
                "type": "metrics-data-source",
                "parameters": {
                    "scheme": "http",
                    "path": contract.METRICS_PATH,  # the serving pods' metrics
                    "insecureSkipVerify": True,
                },
            },
            {"type": "core-metrics-extractor"},
        ],
        "schedulingProfiles": [
            {
                "name": "default",
                "plugins": [
                    {"pluginRef": "queue-scorer", "weight": 2},
                    {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
                    {"pluginRef": "prefix-cache-scorer", "weight": 3},
                    {"pluginRef": "lora-affinity-scorer", "weight": 1},
                ],
            }
        ],
        "flowControl": {"defaultRequestTTL": routing.request_timeout},
    }


def build_picker_config_map(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    text = yaml.safe_dump(picker_config(spec), sort_keys=False)
    return _picker_child("v1", "ConfigMap", picker_name(owner), owner, "data", {CONFIG_FILE: text})


def build_picker_service_account(owner: Owner) -> dict[str, Any]:
    return _picker_child(
        "v1", "ServiceAccount", picker_name(owner), owner, "automountServiceAccountToken", True
    )


def build_picker_role_binding(owner: Owner, cluster_role: str, suffix: str = "") -> dict[str, Any]:
    """Binds the chart's ClusterRole `cluster_role` to the picker's ServiceAccount, in this namespace."""
    subjects = [
        {"kind": "ServiceAccount", "name": picker_name(owner), "namespace": owner.namespace}
    ]
    manifest = _picker_child(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        picker_name(owner) + suffix,
        owner,
        "subjects",
        subjects,
    )
    manifest["roleRef"] = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role + suffix,
    }
    return manifest


def build_picker_service(owner: Owner) -> dict[str, Any]:
    return _picker_child(
        "v1",
        "Service",
        picker_name(owner),
        owner,
        "spec",
        {
            "type": "ClusterIP",
            "selector": picker_selector_labels(owner),
            "ports": [
                {
                    "name": "grpc-ext-proc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {
                    "name": "http-metrics",
                    "port": METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    )


def _picker_args(owner: Owner, spec: ModelDeploymentSpec) -> list[str]:
    args = [
        "--pool-name", owner.name,
        "--pool-namespace", owner.namespace,
        "--pool-group", POOL_GROUP,
        "--config-file", f"{CONFIG_DIR}/{CONFIG_FILE}",
        "--grpc-port", str(GRPC_PORT),
        "--grpc-health-port", str(HEALTH_PORT),
        "--metrics-port", str(METRICS_PORT),
        # Plain /metrics like the serving pods: an authenticated endpoint would need a
        # cluster-wide TokenReview/SubjectAccessReview grant per picker.
        "--metrics-endpoint-auth=false",
        "--zap-encoder", "json",
    ]  # fmt: skip
    if _routing(spec).endpoint_picker.replicas > 1:
        args.append("--ha-enable-leader-election")
    return args


def _probe(service: str, period: int) -> dict[str, Any]:
    return {"grpc": {"port": HEALTH_PORT, "service": service}, "periodSeconds": period}


def build_picker_deployment(owner: Owner, spec: ModelDeploymentSpec, image: str) -> dict[str, Any]:
    picker = _routing(spec).endpoint_picker
    ha = picker.replicas > 1  # leader election: standbys answer liveness, not readiness
    config_hash = content_hash(picker_config(spec))
    container = {
        "name": "epp",
        "image": picker.image or image,
        "imagePullPolicy": "IfNotPresent",
        "args": _picker_args(owner, spec),
        "env": [
            {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "grpc-health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            **_probe("liveness" if ha else "inference-extension", 10),
            "initialDelaySeconds": 5,
        },
        "readinessProbe": _probe("readiness" if ha else "inference-extension", 2),
        "resources": RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    pod = {
        "metadata": {
            "labels": picker_labels(owner),
            "annotations": {
                # The picker reads its config once: a new config rolls the pods.
                CONFIG_HASH_ANNOTATION: config_hash,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "serviceAccountName": picker_name(owner),
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": picker_name(owner)}}],
        },
    }
    return _picker_child(
        "apps/v1",
        "Deployment",
        picker_name(owner),
        owner,
        "spec",
        {
            "replicas": picker.replicas,
            # As upstream: the old picker stops before the new one starts, so a new leader is
            # elected at once instead of waiting behind a rolling update.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": picker_selector_labels(owner)},
            "revisionHistoryLimit": 3,
            "template": pod,
        },
    )


def build_picker_service_monitor(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Prometheus scrapes the picker too: KEDA wakes a pool at zero on its queue metrics."""
    monitor = spec.monitoring.service_monitor
    manifest = _picker_child(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        picker_name(owner),
        owner,
        "spec",
        {
            "selector": {"matchLabels": picker_selector_labels(owner)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [
                {"port": "http-metrics", "path": "/metrics", "interval": monitor.interval}
            ],
        },
    )
    manifest["metadata"]["labels"] = {**monitor.labels, **picker_labels(owner)}
    return manifest


def build_endpoint_picker(
    owner: Owner, spec: ModelDeploymentSpec, *, image: str, cluster_role: str
) -> list[dict[str, Any]]:
    """Every picker child in apply order: identity and rights before the pods that use them."""
    children = [
        build_picker_service_account(owner),
        build_picker_role_binding(owner, cluster_role),
    ]
    if _routing(spec).endpoint_picker.replicas > 1:
        children.append(build_picker_role_binding(owner, cluster_role, LEADER_ELECTION_SUFFIX))
    children += [
        build_picker_config_map(owner, spec),
        build_picker_service(owner),
        build_picker_deployment(owner, spec, image),
    ]
    return children


def wake_query(owner: Owner) -> str:
    """Requests the picker holds for this pool plus those it has in flight (0 when none)."""
    queued = f'{QUEUED_METRIC}{{namespace="{owner.namespace}",inference_pool="{owner.name}"}}'
    pods = f'namespace="{owner.namespace}",pod=~"{picker_name(owner)}-[a-z0-9]+-[a-z0-9]+"'
    return f"(sum({queued}) or vector(0)) + (sum({RUNNING_METRIC}{{{pods}}}) or vector(0))"
