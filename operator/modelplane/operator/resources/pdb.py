"""A PodDisruptionBudget so node drains take at most one serving replica away at a time."""

from __future__ import annotations

from typing import Any

from modelplane.operator.resources.meta import Owner, child, selector_labels
from modelplane.operator.spec import ModelDeploymentSpec


def wants_pdb(spec: ModelDeploymentSpec) -> bool:
    """Only when more than one replica can exist; with one, a PDB would just block drains."""
    if spec.autoscaling is not None:
        return spec.autoscaling.max_replicas > 1
    return spec.replicas > 1


def build_pdb(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any]:
    return child(
        "policy/v1",
        "PodDisruptionBudget",
        owner.name,
        owner,
        "server",
        "spec",
        {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner)}},
    )
