"""What the operator and the server agree on; both import these names, neither repeats them.

The operator builds the pod from them (port, probes, the server's command line, the metric its
autoscalers query); the server listens, routes and exports by them. Tests on each side check
their half: the server's parser accepts every flag the operator emits, its `/metrics` exports
`IN_FLIGHT_METRIC`, and its app routes the probe paths.
"""

from __future__ import annotations

SERVER_PORT = 8000
HEALTH_PATH = "/health"  # liveness: the process answers
READY_PATH = "/ready"  # readiness: the engine has loaded the model
METRICS_PATH = "/metrics"  # Prometheus exposition
# Generation requests running or queued in one pod: the HPA's and KEDA's scaling signal.
IN_FLIGHT_METRIC = "modelplane_requests_in_flight"

# modelplane-server's own flags that the operator sets (vLLM's engine flags keep vLLM's names).
HOST_FLAG = "--host"
PORT_FLAG = "--port"
API_KEY_FILE_FLAG = "--api-key-file"
LORA_MODULES_FLAG = "--lora-modules"
LOG_FORMAT_FLAG = "--log-format"
DRAIN_TIMEOUT_FLAG = "--drain-timeout"
RATE_LIMIT_REQUESTS_FLAG = "--rate-limit-requests-per-minute"
RATE_LIMIT_TOKENS_FLAG = "--rate-limit-tokens-per-minute"
SERVER_FLAGS = (
    HOST_FLAG,
    PORT_FLAG,
    API_KEY_FILE_FLAG,
    LORA_MODULES_FLAG,
    LOG_FORMAT_FLAG,
    DRAIN_TIMEOUT_FLAG,
    RATE_LIMIT_REQUESTS_FLAG,
    RATE_LIMIT_TOKENS_FLAG,
)
