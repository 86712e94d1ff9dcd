"""Names, labels and owner references shared by every child."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modelplane.operator import spec as specmod

APP_NAME = "modelplane-server"
MANAGED_BY = "modelplane-operator"
DEPLOYMENT_LABEL = "modelplane.io/deployment"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment a child belongs to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))


def selector_labels(owner: Owner) -> dict[str, str]:
    """Immutable pod selector: only the name and the instance."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": owner.name}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: owner.name,
    }


def selector_string(owner: Owner) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(owner).items())


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": specmod.API_VERSION,
        "kind": specmod.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def content_hash(content: Any) -> str:
    """A short stable digest (the endpoint picker's pods roll when their config changes)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def child(
    api_version: str, kind: str, name: str, owner: Owner, component: str, spec_key: str, spec: Any
) -> dict[str, Any]:
    """A child manifest whose metadata carries the labels and the controller owner reference."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels(owner, component),
            "ownerReferences": [owner_reference(owner)],
        },
        spec_key: spec,
    }
