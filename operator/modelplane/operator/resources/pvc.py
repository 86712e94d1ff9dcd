"""The model cache PVC `<name>-cache`, when spec.cache.size asks the operator to create one."""

from __future__ import annotations

from typing import Any

from modelplane.operator.resources.meta import Owner, child
from modelplane.operator.spec import AccessMode, ModelDeploymentSpec


def cache_claim_name(owner: Owner) -> str:
    return f"{owner.name}-cache"


def build_cache_pvc(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    assert spec.cache.size is not None
    pvc_spec: dict[str, Any] = {
        # ReadWriteMany by default: replicas on several nodes mount the one filled cache
        # (read-only); ReadWriteOnce is allowed for a single replica (spec.cache.accessMode).
        "accessModes": [AccessMode(spec.cache.access_mode).value],
        "resources": {"requests": {"storage": spec.cache.size}},
    }
    if spec.cache.storage_class_name:
        pvc_spec["storageClassName"] = spec.cache.storage_class_name
    return child(
        "v1", "PersistentVolumeClaim", cache_claim_name(owner), owner, "cache", "spec", pvc_spec
    )
