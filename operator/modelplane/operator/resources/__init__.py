"""Pure builders, one per child kind, and the plan of which children a spec wants.

`plan_children` is the KubeAI-style pure plan: what to apply and which kinds must not exist;
`handlers.py` executes it through `kube.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelplane.operator.resources import leaderworkerset as lws
from modelplane.operator.resources.autoscaler import build_hpa, build_scaled_object
from modelplane.operator.resources.deployment import build_deployment
from modelplane.operator.resources.leaderworkerset import build_leader_worker_set
from modelplane.operator.resources.meta import Owner
from modelplane.operator.resources.pdb import build_pdb, wants_pdb
from modelplane.operator.resources.pvc import build_cache_pvc
from modelplane.operator.resources.routing import RoutingPlan, plan_routing
from modelplane.operator.resources.service import build_service
from modelplane.operator.resources.servicemonitor import build_service_monitor
from modelplane.operator.spec import ModelDeploymentSpec


@dataclass(frozen=True)
class ChildRef:
    """A child that must not exist (e.g. the HPA after autoscaling was turned off)."""

    api_version: str
    kind: str
    name: str


@dataclass
class ChildPlan:
    """What one reconcile does: create-only children, applied children, children to remove."""

    create: list[dict[str, Any]] = field(default_factory=list)  # created if missing, never patched
    apply: list[dict[str, Any]] = field(default_factory=list)  # created, or patched to match
    delete: list[ChildRef] = field(default_factory=list)


def plan_children(
    owner: Owner,
    spec: ModelDeploymentSpec,
    *,
    default_image: str,
    service_monitor_available: bool = False,
    routing: RoutingPlan | None = None,
) -> ChildPlan:
    """`routing` carries the operator's routing defaults and what the cluster offers."""
    plan = ChildPlan()
    if spec.cache.size:
        # Create-only: a claim's spec is immutable once bound (a new class or a smaller size
        # needs a new claim), and a rejected patch must not block the Deployment's rollout.
        plan.create.append(build_cache_pvc(owner, spec))
    # One workload serves: a Deployment, or a LeaderWorkerSet when a replica spans nodes.
    if spec.multi_node:
        plan.apply.append(build_leader_worker_set(owner, spec, default_image=default_image))
        plan.delete.append(ChildRef("apps/v1", "Deployment", owner.name))
    else:
        plan.apply.append(build_deployment(owner, spec, default_image=default_image))
        plan.delete.append(ChildRef(lws.API_VERSION, lws.KIND, owner.name))
    plan.apply.append(build_service(owner, spec))

    hpa = ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", owner.name)
    scaled = ChildRef("keda.sh/v1alpha1", "ScaledObject", owner.name)
    if spec.autoscaling is None:
        plan.delete += [hpa, scaled]
    elif spec.autoscaling.provider == "keda":
        plan.apply.append(build_scaled_object(owner, spec))
        plan.delete.append(hpa)
    else:
        plan.apply.append(build_hpa(owner, spec))
        plan.delete.append(scaled)

    if wants_pdb(spec):
        plan.apply.append(build_pdb(owner, spec))
    else:
        plan.delete.append(ChildRef("policy/v1", "PodDisruptionBudget", owner.name))

    if spec.monitoring.service_monitor.enabled and service_monitor_available:
        plan.apply.append(build_service_monitor(owner, spec))
    apply, delete = plan_routing(owner, spec, routing or RoutingPlan(), service_monitor_available)
    plan.apply += apply
    plan.delete += [ChildRef(*ref) for ref in delete]
    # The cache PVC is never deleted when cache.size is removed: it may hold 100s of GB of weights
    # the user wants to keep; garbage collection removes it with the ModelDeployment.
    return plan


__all__ = ["ChildPlan", "ChildRef", "Owner", "RoutingPlan", "plan_children"]
