"""The coordination.k8s.io/v1 Lease of leader election: its record (pure) and its API calls.

The record follows client-go's LeaseLock: `holderIdentity`, `leaseDurationSeconds`,
`acquireTime`, `renewTime` (MicroTime) and `leaseTransitions`. Every patch carries the
`resourceVersion` it was based on, so the API server rejects one built on a stale read (409).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from modelplane.operator.kube import MERGE_PATCH, Kube, KubeError


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds and `Z`."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder(lease: Mapping[str, Any]) -> str:
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def observed_record(lease: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a candidate watches change: holder, renewTime and resourceVersion."""
    spec = lease.get("spec") or {}
    version = (lease.get("metadata") or {}).get("resourceVersion")
    return holder(lease), str(spec.get("renewTime") or ""), str(version or "")


def is_expired(lease: Mapping[str, Any], observed_at: float, now: float) -> bool:
    """Free to take: no holder, or unchanged for its leaseDurationSeconds since `observed_at`.

    As client-go's observedTime: both times are this candidate's own monotonic clock (when it
    last saw `observed_record` change, and now), never the holder's `renewTime`, so clock skew
    between nodes cannot make a healthy Lease look expired.
    """
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return True
    return now >= observed_at + float(spec.get("leaseDurationSeconds") or 0)


def _whole_seconds(duration: float) -> int:
    return max(1, math.ceil(duration))  # leaseDurationSeconds is an int32


def new_lease(
    namespace: str, name: str, identity: str, lease_duration: float, now: datetime.datetime
) -> dict[str, Any]:
    """The Lease the first candidate creates, held by it."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "modelplane-operator"},
        },
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": _whole_seconds(lease_duration),
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": 0,
        },
    }


def _versioned(lease: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A merge patch the API server rejects (409) when `lease` is no longer the current version."""
    version = (lease.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": version}, "spec": spec}


def takeover_patch(
    lease: Mapping[str, Any], identity: str, lease_duration: float, now: datetime.datetime
) -> dict[str, Any]:
    """Take an expired or released Lease: a new holder is one more transition."""
    transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0)
    return _versioned(
        lease,
        {
            "holderIdentity": identity,
            "leaseDurationSeconds": _whole_seconds(lease_duration),
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions + 1,
        },
    )


def renew_patch(
    lease: Mapping[str, Any], identity: str, lease_duration: float, now: datetime.datetime
) -> dict[str, Any]:
    """Renew a Lease this identity holds."""
    return _versioned(
        lease,
        {
            "holderIdentity": identity,
            "leaseDurationSeconds": _whole_seconds(lease_duration),
            "renewTime": micro_time(now),
        },
    )


def release_patch(lease: Mapping[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """Give the Lease up (client-go's ReleaseOnCancel): a standby takes it on its next retry."""
    return _versioned(
        lease,
        {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time(now)},
    )


class LeaseError(Exception):
    """An API error other than 404 on get and 409 on create/patch, or no answer in time."""


class LeaseClient:
    """GET, POST and merge PATCH of one Lease, each with its own timeout."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self._kube = kube
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
        self.item = f"{self.collection}/{quote(name)}"

    def _request(
        self,
        method: str,
        path: str,
        timeout: float,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        try:
            return self._kube.request(method, path, body, content_type, timeout=timeout)
        except KubeError as error:  # no answer in time
            raise LeaseError(str(error)) from error

    def _result(self, method: str, path: str, status: int, data: Any) -> dict[str, Any] | None:
        if 200 <= status < 300 and isinstance(data, dict):
            return data
        if status == 409:
            return None
        raise LeaseError(f"{method} {path} -> HTTP {status}: {str(data)[:300]}")

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        status, data = self._request("GET", self.item, timeout)
        return None if status == 404 else self._result("GET", self.item, status, data)

    def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The created Lease, or None when another candidate created it first."""
        status, data = self._request("POST", self.collection, timeout, lease)
        return self._result("POST", self.collection, status, data)

    def patch(self, patch: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The patched Lease, or None when its resourceVersion is stale (409)."""
        status, data = self._request("PATCH", self.item, timeout, patch, MERGE_PATCH)
        return self._result("PATCH", self.item, status, data)
