"""The operator's configuration: one typed object built from flags and MODELPLANE_* env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass

from modelplane.operator.spec import DEFAULT_IMAGE


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    # modelplane-server image for ModelDeployments that set no spec.image.
    default_image: str = DEFAULT_IMAGE
    # Deleted or hand-edited Deployments/Services/HPAs/PDBs are restored at once through their
    # watch events. A periodic re-apply of everything is optional (0 = off): kopf timers need a
    # finalizer on every ModelDeployment.
    resync_seconds: float = 0.0
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 9090  # 0 disables the Prometheus endpoint
    metrics_host: str = "0.0.0.0"
    # kopf peering: with the KopfPeering CRD installed, only the highest-priority operator acts.
    peering_name: str = "modelplane"
    standalone: bool = False
    # Sync handlers run in threads; one slow API call must not stall the other reconciles.
    max_workers: int = 16
    log_format: str = "json"
    verbose: bool = False

    @classmethod
    def from_env(cls) -> OperatorSettings:
        env = os.environ
        namespaces = tuple(n for n in env.get("MODELPLANE_NAMESPACES", "").split(",") if n)
        return cls(
            namespaces=namespaces,
            all_namespaces=env.get("MODELPLANE_ALL_NAMESPACES", "") in ("1", "true", "yes"),
            default_image=env.get("MODELPLANE_DEFAULT_IMAGE", DEFAULT_IMAGE),
            resync_seconds=float(env.get("MODELPLANE_RESYNC_SECONDS", "0")),
            metrics_port=int(env.get("MODELPLANE_METRICS_PORT", "9090")),
            peering_name=env.get("MODELPLANE_PEERING", "modelplane"),
        )
