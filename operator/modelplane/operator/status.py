"""ModelDeployment status from its owned Deployment: phase, Ready/SpecValid conditions, endpoint.

Pure functions: the handlers pass the Deployment dict in and patch the returned dict.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from modelplane.contract import SERVER_PORT


class Phase(str, enum.Enum):
    pending = "Pending"
    progressing = "Progressing"
    ready = "Ready"
    degraded = "Degraded"
    failed = "Failed"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, use_enum_values=True)


class ConditionStatus(str, enum.Enum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(_Model):
    type: str = Field(
        ...,
        description="Ready, SpecValid, Routed, WeightsCached, GPUFit, or Reconciled (only while "
        "reconciles fail).",
    )
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details (names the field when invalid).")
    last_transition_time: str = Field(
        ..., json_schema_extra={"format": "date-time"}, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed from."
    )


class ModelDeploymentStatus(_Model):
    """Observed state, written by the operator."""

    phase: Phase | None = Field(
        None, description="Pending, Progressing, Ready, Degraded or Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready, SpecValid, (with spec.routing) Routed, and (with a fetched cache) WeightsCached"
            " and GPUFit conditions (Kubernetes conventions)."
        ),
    )
    replicas: int | None = Field(None, description="Pods of the Deployment (scale subresource).")
    ready_replicas: int | None = Field(None, description="Pods passing their readiness probe.")
    selector: str | None = Field(
        None, description="Label selector of the pods (scale subresource)."
    )
    endpoint: str | None = Field(None, description="In-cluster OpenAI-compatible base URL.")
    gateway_endpoint: str | None = Field(
        None,
        description="OpenAI-compatible base URL on the Gateway (spec.routing), from the "
        "Gateway's status when the operator can read it.",
    )
    served_model_name: str | None = Field(None, description="The model name clients request.")
    workload_kind: str | None = Field(
        None,
        description="The workload that serves: Deployment, or LeaderWorkerSet when a replica "
        "spans several nodes (spec.resources.nodes > 1).",
    )
    observed_generation: int | None = Field(
        None, description="The metadata.generation the operator last reconciled."
    )
    engine: list[str] | None = Field(
        None,
        description="The exact modelplane-server (vLLM) arguments the serving pods run with.",
    )


def endpoint_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{SERVER_PORT}/v1"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    previous: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    """A condition that keeps its lastTransitionTime unless its status flips."""
    status_text = "True" if status else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status_text else now
    result: dict[str, Any] = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        result["observedGeneration"] = generation
    return result


def tri_condition(
    previous: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    """A True/False/Unknown condition that keeps its lastTransitionTime unless its status flips."""
    result = condition(previous, type_, True, reason, message, generation, now)
    old = next((c for c in previous if c.get("type") == type_), None)
    result["status"] = status
    result["lastTransitionTime"] = (
        old["lastTransitionTime"] if old and old.get("status") == status else now
    )
    return result


def deployment_phase(
    deployment: dict[str, Any] | None, kind: str = "Deployment"
) -> tuple[Phase, str, str]:
    """(phase, reason, message) of the serving workload (a Deployment or a LeaderWorkerSet,
    whose status has the same replica counts); the Ready condition follows from the phase."""
    if deployment is None:
        return Phase.pending, f"{kind}Missing", f"the {kind} does not exist yet"
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Phase.failed, "ProgressDeadlineExceeded", cond.get("message", "")
    if desired == 0:
        return Phase.pending, "ScaledToZero", "0 replicas: nothing serves until the count rises"
    rolled_out = (generation is None or observed == generation) and updated >= desired
    if not rolled_out:
        return Phase.progressing, "RollingOut", f"{updated}/{desired} replicas updated"
    if ready >= desired:
        return Phase.ready, "ReplicasReady", f"{ready}/{desired} replicas ready"
    if ready > 0:
        return Phase.degraded, "ReplicasNotReady", f"{ready}/{desired} replicas ready"
    return Phase.progressing, "ReplicasStarting", f"0/{desired} replicas ready (loading the model)"


def build_status(
    *,
    name: str,
    namespace: str,
    served_model_name: str | None,
    selector: str,
    deployment: dict[str, Any] | None,
    spec_error: str | None,
    observed_generation: int | None,
    previous: dict[str, Any] | None,
    now: str | None = None,
    workload_kind: str = "Deployment",
    weights: list[tuple[str, str, str, str]] | None = None,
    hold: tuple[str, str] | None = None,
    engine: list[str] | None = None,
) -> dict[str, Any]:
    """The whole status dict (camelCase) for a ModelDeployment.

    `weights`: WeightsCached/GPUFit conditions as (type, status, reason, message), None to keep
    the previous ones; `hold`: why no Deployment exists yet (e.g. WaitingForWeights).
    """
    now = now or now_rfc3339()
    old_conditions = list((previous or {}).get("conditions") or [])
    dep_status = (deployment or {}).get("status") or {}
    serving, reason, message = deployment_phase(deployment, workload_kind)
    if deployment is None and hold is not None:
        reason, message = hold
    ready_generation = observed_generation
    if spec_error is None:
        phase = serving
        spec_valid = condition(
            old_conditions, "SpecValid", True, "Valid", "spec is valid", observed_generation, now
        )
    else:
        # The spec cannot be applied: phase Failed. Ready still tells whether the endpoint
        # answers, since a Deployment made from the last valid spec keeps serving.
        phase = Phase.failed
        spec_valid = condition(
            old_conditions, "SpecValid", False, "InvalidSpec", spec_error, observed_generation, now
        )
        if deployment is None:
            reason, message = "InvalidSpec", spec_error
        else:
            message = f"{message}; serving the last valid spec until the spec is fixed"
            # Ready describes the generation that serves, not the rejected one: a client
            # waiting for Ready at the new generation must not see it.
            old_ready: dict[str, Any] = next(
                (c for c in old_conditions if c.get("type") == "Ready"), {}
            )
            ready_generation = old_ready.get("observedGeneration")
    ready = condition(
        old_conditions, "Ready", serving == Phase.ready, reason, message, ready_generation, now
    )
    if weights is None:
        extra = [c for c in old_conditions if c.get("type") in ("WeightsCached", "GPUFit")]
    else:
        extra = [
            tri_condition(old_conditions, type_, value, why, text, observed_generation, now)
            for type_, value, why, text in weights
        ]
    status: dict[str, Any] = {
        "phase": phase.value,
        "conditions": [ready, spec_valid, *extra],
        "replicas": int(dep_status.get("replicas") or 0),
        "readyReplicas": int(dep_status.get("readyReplicas") or 0),
        "selector": selector,
        "endpoint": endpoint_url(name, namespace),
        "workloadKind": workload_kind,
    }
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    if served_model_name:
        status["servedModelName"] = served_model_name
    engine = engine if engine is not None else (previous or {}).get("engine")
    if engine is not None:
        status["engine"] = engine
    return status


def status_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether patching `new` over `old` would change anything (avoids no-op writes)."""
    old = old or {}
    return any(old.get(key) != value for key, value in new.items())


def failed_reconcile_status(
    previous: dict[str, Any] | None,
    *,
    reason: str,
    message: str,
    generation: int | None,
    not_ready: bool = False,
    now: str | None = None,
) -> dict[str, Any]:
    """The last status plus `Reconciled=False` saying why the children could not be applied.

    With `not_ready` (a child name taken by an object it does not control) Ready is False too,
    for the same reason: nothing of this ModelDeployment serves under that name. The condition
    disappears with the next successful reconcile, which writes the whole status again.
    """
    now = now or now_rfc3339()
    status = dict(previous or {})
    old_conditions = list(status.get("conditions") or [])
    failed = condition(old_conditions, "Reconciled", False, reason, message, generation, now)
    conditions = [c for c in old_conditions if c.get("type") != "Reconciled"]
    if not_ready:
        ready = condition(old_conditions, "Ready", False, reason, message, generation, now)
        conditions = [ready if c.get("type") == "Ready" else c for c in conditions]
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.insert(0, ready)
    status["conditions"] = [*conditions, failed]
    return status
