"""Three-way merge patches for children, like `kubectl apply`: desired, last applied, live.

A JSON merge patch of the desired manifest alone never removes a key the operator set before
(a nodeSelector entry, a pod annotation, a ServiceMonitor label), and a PUT would wipe what the
API server and other controllers added. So each child carries the manifest last applied to it
in an annotation; a key in that manifest but no longer desired is sent as `null`, which RFC 7386
(and every API server, and kmock) reads as "remove". Keys the operator never set stay.
Lists are replaced whole by merge patches, so only mapping keys need this. Pure functions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

LAST_APPLIED_ANNOTATION = "modelplane.io/last-applied-configuration"

# Fields the operator stops setting in order to hand them to another controller, not to reset
# them: with autoscaling turned on, `null` on Deployment spec.replicas would make the API server
# default it to 1 and scale a busy model down before the autoscaler scales it back up.
HANDED_OVER_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Deployment": (("spec", "replicas"),),
}


def with_last_applied(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `manifest` that records itself in the last-applied annotation."""
    result = copy.deepcopy(dict(manifest))
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(LAST_APPLIED_ANNOTATION, None)
    record = json.dumps(result, sort_keys=True, separators=(",", ":"))
    annotations[LAST_APPLIED_ANNOTATION] = record
    return result


def last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest recorded on a live object ({} when absent or unreadable: remove nothing)."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        recorded = json.loads(annotations.get(LAST_APPLIED_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def removed_keys(
    previous: Mapping[str, Any], desired: Mapping[str, Any], live: Mapping[str, Any]
) -> dict[str, Any]:
    """`null` for each key applied before, no longer desired, and still on the live object."""
    removals: dict[str, Any] = {}
    for key, old in previous.items():
        if key not in live:
            continue
        if key not in desired:
            removals[key] = None
        elif (
            isinstance(old, Mapping)
            and isinstance(desired[key], Mapping)
            and isinstance(live[key], Mapping)
        ):
            nested = removed_keys(old, desired[key], live[key])
            if nested:
                removals[key] = nested
    return removals


def stale_keys(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The removals `three_way_patch` must carry: `removed_keys` minus the handed-over fields."""
    removals = removed_keys(last_applied(live), desired, live)
    for path in HANDED_OVER_FIELDS.get(str(desired.get("kind")), ()):
        _drop(removals, path)
    return removals


def _drop(removals: dict[str, Any], path: tuple[str, ...]) -> None:
    """Remove `path` from a removals tree, and the mappings it leaves empty."""
    head, rest = path[0], path[1:]
    if not rest:
        removals.pop(head, None)
    elif isinstance(removals.get(head), dict):
        _drop(removals[head], rest)
        if not removals[head]:
            del removals[head]


def three_way_patch(desired: Mapping[str, Any], stale: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch taking a live object to `desired`: every desired field, `null` for `stale`."""
    patch = dict(desired)
    for key, value in stale.items():
        if isinstance(value, Mapping) and isinstance(patch.get(key), Mapping):
            patch[key] = three_way_patch(patch[key], value)
        else:
            patch[key] = value
    return patch
