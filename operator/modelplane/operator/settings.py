"""The operator's configuration: one typed object built from flags and MODELPLANE_* env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from modelplane.operator.election import (
    DEFAULT_LEASE_DURATION,
    DEFAULT_LEASE_NAME,
    DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD,
)
from modelplane.operator.routing import (
    DEFAULT_ENDPOINT_PICKER_IMAGE,
    DEFAULT_ENDPOINT_PICKER_ROLE,
    RoutingDefaults,
    parse_gateway,
)
from modelplane.operator.spec import DEFAULT_IMAGE

TRUE = ("1", "true", "yes")
_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0))


def seconds(text: str | float) -> float:
    """A duration in seconds from `15`, `15s`, `500ms` or `1m` (Go-style units, one of them)."""
    value = str(text).strip()
    for suffix, factor in _UNITS:
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(value[: -len(suffix)]) * factor
    return float(value)


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    # modelplane-server image for ModelDeployments that set no spec.image.
    default_image: str = DEFAULT_IMAGE
    # Deleted or hand-edited children (every kind the operator makes) are restored at once through their
    # watch events. A periodic re-apply of everything is optional (0 = off): kopf timers need a
    # finalizer on every ModelDeployment.
    resync_seconds: float = 0.0
    # While a fetch Job runs, its pod's last progress line is read and WeightsCached rewritten
    # (only if it changed) this often.
    fetch_progress_seconds: float = 10.0
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 9090  # 0 disables the Prometheus endpoint
    metrics_host: str = "0.0.0.0"
    # Only the holder of a coordination.k8s.io Lease reconciles (client-go's leader election);
    # off for a single local process. The namespace defaults to the pod's (see leader.py).
    leader_elect: bool = True
    leader_election_namespace: str | None = None
    leader_election_id: str = DEFAULT_LEASE_NAME
    lease_duration: float = DEFAULT_LEASE_DURATION
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    retry_period: float = DEFAULT_RETRY_PERIOD
    # Most handler threads at once: kopf runs one handler per object at a time and the pool
    # starts a thread per handler in flight (handler_pool.py), so this many objects whose API
    # calls hang are needed before a healthy one waits. Idle threads exit.
    max_workers: int = 256
    # Client-side limit on the handlers' API requests (client-go's QPS/burst token bucket):
    # a restart on many ModelDeployments is spread out instead of reaching the API server as up
    # to max_workers requests at once. qps <= 0: no limit. The Lease client is not limited.
    kube_api_qps: float = 50.0
    kube_api_burst: int = 100
    log_format: str = "json"
    verbose: bool = False
    # spec.routing: the Gateway when a ModelDeployment names none, the endpoint picker image, and
    # the ClusterRole (shipped by the chart) bound to each picker.
    routing: RoutingDefaults = field(default_factory=RoutingDefaults)
    # GET /v1/models of every Ready, routed model on the default gateway (0 = off).
    models_port: int = 0

    @classmethod
    def from_env(cls) -> OperatorSettings:
        env = os.environ
        namespaces = tuple(n for n in env.get("MODELPLANE_NAMESPACES", "").split(",") if n)
        gateway = env.get("MODELPLANE_DEFAULT_GATEWAY", "")
        routing = RoutingDefaults(
            gateway=parse_gateway(gateway) if gateway else None,
            endpoint_picker_image=env.get(
                "MODELPLANE_ENDPOINT_PICKER_IMAGE", DEFAULT_ENDPOINT_PICKER_IMAGE
            ),
            endpoint_picker_role=env.get(
                "MODELPLANE_ENDPOINT_PICKER_ROLE", DEFAULT_ENDPOINT_PICKER_ROLE
            ),
        )
        return cls(
            routing=routing,
            namespaces=namespaces,
            all_namespaces=env.get("MODELPLANE_ALL_NAMESPACES", "").lower() in TRUE,
            default_image=env.get("MODELPLANE_DEFAULT_IMAGE", DEFAULT_IMAGE),
            resync_seconds=float(env.get("MODELPLANE_RESYNC_SECONDS", "0")),
            fetch_progress_seconds=seconds(env.get("MODELPLANE_FETCH_PROGRESS_INTERVAL", "10s")),
            metrics_port=int(env.get("MODELPLANE_METRICS_PORT", "9090")),
            max_workers=int(env.get("MODELPLANE_MAX_WORKERS", str(cls.max_workers))),
            kube_api_qps=float(env.get("MODELPLANE_KUBE_API_QPS", str(cls.kube_api_qps))),
            kube_api_burst=int(env.get("MODELPLANE_KUBE_API_BURST", str(cls.kube_api_burst))),
            leader_elect=env.get("MODELPLANE_LEADER_ELECT", "true").lower() in TRUE,
            leader_election_namespace=env.get("MODELPLANE_LEADER_ELECTION_NAMESPACE") or None,
            leader_election_id=env.get("MODELPLANE_LEADER_ELECTION_ID") or DEFAULT_LEASE_NAME,
            lease_duration=seconds(
                env.get("MODELPLANE_LEADER_ELECT_LEASE_DURATION", DEFAULT_LEASE_DURATION)
            ),
            renew_deadline=seconds(
                env.get("MODELPLANE_LEADER_ELECT_RENEW_DEADLINE", DEFAULT_RENEW_DEADLINE)
            ),
            retry_period=seconds(
                env.get("MODELPLANE_LEADER_ELECT_RETRY_PERIOD", DEFAULT_RETRY_PERIOD)
            ),
        )
