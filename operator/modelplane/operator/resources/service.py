"""The ClusterIP Service `<name>` in front of the server pods (port 8000 named http).

Multi-node models: only the group leaders serve HTTP, so only they are selected.
"""

from __future__ import annotations

from typing import Any

from modelplane.contract import SERVER_PORT
from modelplane.operator.resources.leaderworkerset import serving_selector
from modelplane.operator.resources.meta import Owner, child
from modelplane.operator.spec import ModelDeploymentSpec


def build_service(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    return child(
        "v1",
        "Service",
        owner.name,
        owner,
        "server",
        "spec",
        {
            "type": "ClusterIP",
            "selector": serving_selector(owner, spec),
            "ports": [
                {"name": "http", "port": SERVER_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    )
