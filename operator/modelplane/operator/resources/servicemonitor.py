"""A prometheus-operator ServiceMonitor scraping /metrics of the server pods (when asked)."""

from __future__ import annotations

from typing import Any

from modelplane.contract import METRICS_PATH
from modelplane.operator.resources.meta import Owner, child, labels, selector_labels
from modelplane.operator.spec import ModelDeploymentSpec

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


def build_service_monitor(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    monitor = spec.monitoring.service_monitor
    manifest = child(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        owner.name,
        owner,
        "monitoring",
        "spec",
        {
            "selector": {
                "matchLabels": {**selector_labels(owner), "app.kubernetes.io/component": "server"}
            },
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [{"port": "http", "path": METRICS_PATH, "interval": monitor.interval}],
        },
    )
    manifest["metadata"]["labels"] = {**monitor.labels, **labels(owner, "monitoring")}
    return manifest
