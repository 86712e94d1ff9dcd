"""The InferencePool `<name>` (inference.networking.k8s.io/v1): the serving pods behind a Gateway.

Upstream's fields, as its chart renders them: the pods by label, the server port, and the
endpoint picker's Service on its ext-proc port. FailClose: with the picker down the gateway
refuses requests instead of spraying them at pods it cannot see the load of.
"""

from __future__ import annotations

from typing import Any

from modelplane.contract import SERVER_PORT
from modelplane.operator.resources.endpoint_picker import GRPC_PORT, picker_name
from modelplane.operator.resources.leaderworkerset import serving_selector
from modelplane.operator.resources.meta import Owner, child
from modelplane.operator.spec import ModelDeploymentSpec

API_VERSION = "inference.networking.k8s.io/v1"
KIND = "InferencePool"


def build_inference_pool(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    return child(
        API_VERSION,
        KIND,
        owner.name,
        owner,
        "routing",
        "spec",
        {
            # The serving pods only: the picker's own pods carry another app.kubernetes.io/name,
            # and of a multi-node model only the group leaders serve HTTP.
            "selector": {"matchLabels": serving_selector(owner, spec)},
            "targetPorts": [{"number": SERVER_PORT}],
            "endpointPickerRef": {
                "kind": "Service",
                "name": picker_name(owner),
                "port": {"number": GRPC_PORT},
                "failureMode": "FailClose",
            },
        },
    )
