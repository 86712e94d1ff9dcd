"""Prometheus metrics of the operator: reconciles, errors, their durations, leadership."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "modelplane_operator_reconciles_total",
    "ModelDeployment reconciles by trigger and result.",
    ["trigger", "result"],
)
ERRORS = Counter(
    "modelplane_operator_reconcile_errors_total",
    "Reconciles that failed with an API error (retried by kopf).",
    ["trigger"],
)
DURATION = Histogram(
    "modelplane_operator_reconcile_duration_seconds",
    "Time to apply one ModelDeployment's children and status.",
    ["trigger"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

LEADER = Gauge(
    "modelplane_operator_leader",
    "1 while this replica holds the leader Lease and reconciles; 0 while it stands by.",
)


def serve(port: int, host: str) -> None:
    if port:
        start_http_server(port, addr=host)
