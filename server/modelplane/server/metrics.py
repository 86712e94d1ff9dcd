"""Prometheus metrics: modelplane's own next to vLLM's `vllm:*`, all in the default registry.

Each request updates its metrics once, when it finishes (`observe_request`), never per token.
`modelplane_requests_in_flight` is what the operator's autoscaler scales on: keep the name.

Several front ends (`--api-server-count N`) use prometheus_client's multiprocess mode, as vLLM
does: each process writes its values to files in `PROMETHEUS_MULTIPROC_DIR` and `/metrics`,
whichever process answers, merges them all (counters and histograms add up; in-flight is the
sum over live processes; vLLM's engine gauges take the most recent value). One process keeps
the in-memory default registry.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from modelplane.contract import IN_FLIGHT_METRIC
from modelplane.server.request_record import RequestRecord

# Same shape as vLLM's TTFT buckets, so dashboards can put both on one panel.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
)
UNKNOWN_MODEL = "unknown"
# prometheus_client's switch: set before it is imported, metric values live in files there.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
ANONYMOUS_KEY = "anonymous"


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelplane_requests",
            "API requests by route, model, HTTP status and API key name.",
            ["route", "model", "status", "key"],
            registry=registry,
        )
        self.in_flight = Gauge(
            IN_FLIGHT_METRIC,
            "Generation requests running or queued in this pod.",
            registry=registry,
            # Several front ends: the pod's figure is the sum over the processes alive.
            multiprocess_mode="livesum",
        )
        self.time_to_first_token = Histogram(
            "modelplane_time_to_first_token_seconds",
            "From request arrival to the first generated token.",
            ["route", "model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "modelplane_request_latency_seconds",
            "From request arrival to the last byte of the response.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "modelplane_prompt_tokens",
            "Prompt tokens processed, by model and API key name.",
            ["model", "key"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "modelplane_completion_tokens",
            "Completion tokens generated, by model and API key name.",
            ["model", "key"],
            registry=registry,
        )

    def observe_request(self, record: RequestRecord, known_models: Collection[str]) -> None:
        """Record a finished request. Unknown model names collapse into one label value."""
        model = record.model if record.model in known_models else UNKNOWN_MODEL
        key = record.key_name or ANONYMOUS_KEY
        self.requests.labels(record.route, model, str(record.status_code), key).inc()
        latency = record.latency_s
        if latency is not None:
            self.latency.labels(record.route, model).observe(latency)
        ttft = record.time_to_first_token_s
        if ttft is not None:
            self.time_to_first_token.labels(record.route, model).observe(ttft)
        if record.prompt_tokens:
            self.prompt_tokens.labels(model, key).inc(record.prompt_tokens)
        if record.completion_tokens:
            self.completion_tokens.labels(model, key).inc(record.completion_tokens)


@lru_cache(maxsize=1)
def default_metrics() -> ServerMetrics:
    """The process-wide metrics (a registry accepts each name once)."""
    return ServerMetrics(REGISTRY)


def multiprocess_dir() -> str | None:
    """Where the front ends' metric files are, when several processes serve (else None)."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


@lru_cache(maxsize=1)
def exposition_registry() -> CollectorRegistry:
    """What `/metrics` serves: this process's registry, or all front ends' files merged."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def render_metrics(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    return generate_latest(
        registry if registry is not None else exposition_registry()
    ), CONTENT_TYPE_LATEST
