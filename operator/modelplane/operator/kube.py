"""The Kubernetes API calls of the operator; the only place that tolerates 404 and 409.

Children are applied as "read; create when missing, merge-patch what differs": JSON merge patches
work on every API server and on custom resources (strategic merge does not), and on the kmock
emulator the tests use. The patch is three-way (`last_applied`): keys the operator set before and
no longer wants are removed, keys others added stay. Reading first means a child that already
matches costs one GET and no write, so a restart on an unchanged cluster writes nothing.
An object that lacks the owner's controller reference is never written to (`NotOwned`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import kubernetes
import urllib3
from urllib3.connectionpool import ConnectionPool
from urllib3.response import BaseHTTPResponse

from modelplane.operator import spec as specmod
from modelplane.operator.last_applied import stale_keys, three_way_patch, with_last_applied
from modelplane.operator.rate_limit import TokenBucket
from modelplane.operator.resources import ChildRef

log = logging.getLogger(__name__)

PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ScaledObject": "scaledobjects",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ServiceMonitor": "servicemonitors",
    "CustomResourceDefinition": "customresourcedefinitions",
    "ConfigMap": "configmaps",
    "ServiceAccount": "serviceaccounts",
    "RoleBinding": "rolebindings",
    "InferencePool": "inferencepools",
    "HTTPRoute": "httproutes",
    "Gateway": "gateways",
    "LeaderWorkerSet": "leaderworkersets",
    "Job": "jobs",
    "Pod": "pods",
    specmod.KIND: specmod.PLURAL,
}
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """An API error other than the tolerated 404/409."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:300]}")
        self.status = status
        self.method = method
        self.path = path
        self.body = body

    def summary(self) -> str:
        """One short line for a status condition: what was asked, what came back (no raw body)."""
        what = describe_path(self.path)
        if self.status == 0:
            return f"{self.method} {what}: the API server did not answer"
        reason = _api_reason(self.body)
        return f"{self.method} {what}: HTTP {self.status}" + (f" {reason}" if reason else "")


class NotOwned(KubeError):
    """A child's name is taken by an object this ModelDeployment does not control."""

    def __init__(self, kind: str, namespace: str | None, name: str, owner: str | None) -> None:
        held = f"controlled by {owner}" if owner else "not controlled by this ModelDeployment"
        self.object = f"{kind} {namespace}/{name}"
        super().__init__(409, "APPLY", self.object, f"{self.object} exists and is {held}")

    def summary(self) -> str:
        return self.body


def resource_path(
    api_version: str, kind: str, namespace: str | None, name: str | None = None, sub: str = ""
) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = prefix
    if namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{PLURALS[kind]}"
    if name:
        path += f"/{quote(name)}"
    if sub:
        path += f"/{sub}"
    return path


def describe_path(path: str) -> str:
    """`/apis/apps/v1/namespaces/ns/deployments/x` -> `Deployment ns/x` (the path when unknown)."""
    kinds = {plural: kind for kind, plural in PLURALS.items()}
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        at = parts.index("namespaces")
        rest = parts[at + 2 :]
        if rest and rest[0] in kinds:
            name = f"/{rest[1]}" if len(rest) > 1 else ""
            return f"{kinds[rest[0]]} {parts[at + 1]}{name}"
    return path


def _api_reason(body: str) -> str:
    """The `reason` of a Kubernetes Status body (`Conflict`, `Forbidden`...), else ''."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    reason = data.get("reason") if isinstance(data, dict) else None
    return str(reason)[:40] if reason else ""


def controller_description(obj: Mapping[str, Any]) -> str | None:
    """`Kind/name` of the object's controller owner, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def contains(actual: Any, desired: Any) -> bool:
    """Whether `actual` already holds every field of `desired` (server defaults may add more)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and contains(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, Sequence)
            and not isinstance(actual, str)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    # Quantities and int-or-strings come back normalised ("1" vs 1): compare as text.
    return actual == desired or str(actual) == str(desired)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller owner, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


REQUEST_TIMEOUT_S = 30.0


class NoResendAfterTimeout(urllib3.Retry):
    """urllib3's retries, except that a request unanswered within its timeout is not sent again.

    urllib3 re-sends a timed-out GET or DELETE 3 times, so a hanging call held its handler's
    thread for 4x the timeout; kopf retries the whole (idempotent) reconcile with backoff instead.
    Refused connects and dropped keep-alive connections are still retried: they fail fast.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


class Kube:
    """A thin synchronous client on the `kubernetes` package's connection handling and auth."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient | None = None,
        pool_size: int = 16,
        retries: int | urllib3.Retry | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self._api = api_client
        # Client-side QPS/burst (rate_limit.py), shared by every thread of this client; None:
        # unlimited (the Lease client has its own Kube, so renewals never queue behind it).
        self._rate_limit = rate_limit
        self._pool_size = pool_size
        # urllib3 retries a failed connect 3 times (a call then takes up to 4x its timeout when
        # connects hang); the Lease client, which works to a deadline, uses 0.
        self._retries = NoResendAfterTimeout(3) if retries is None else retries
        self._lock = threading.Lock()

    @property
    def api(self) -> kubernetes.client.ApiClient:
        with self._lock:
            if self._api is None:
                config = kubernetes.client.Configuration()
                try:
                    kubernetes.config.load_incluster_config(client_configuration=config)
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config(client_configuration=config)
                # One pooled connection per handler thread (urllib3 keeps 4 by default).
                config.connection_pool_maxsize = self._pool_size
                config.retries = self._retries
                self._api = kubernetes.client.ApiClient(configuration=config)
            return self._api

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT_S,
        text_only: bool = False,
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON or text); no answer is KubeError status 0.

        `timeout` bounds each attempt; urllib3 may retry a failed connect (see `retries`).
        `text_only`: the body as text even when it looks like JSON (a pod's log of JSON lines).
        With a rate limit, the token is taken before anything else: a waiting request holds no
        connection, and a hung one no token.
        """
        if self._rate_limit is not None:
            self._rate_limit.wait()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(*params, _request_timeout=max(timeout, 0.1))
            raw = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Unreachable or timed-out API server: retried with backoff like any API error.
            raise KubeError(0, method, path, f"{type(exc).__name__}: {exc}") from exc
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        if text_only and 200 <= response.status < 300:
            return response.status, text
        data = json.loads(text) if text.strip().startswith(("{", "[")) else text
        return response.status, data

    def _ok(self, method: str, path: str, status: int, data: Any) -> Any:
        if 200 <= status < 300:
            return data
        raise KubeError(
            status, method, path, json.dumps(data) if not isinstance(data, str) else data
        )

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        path = resource_path(api_version, kind, namespace, name)
        status, data = self.request("GET", path)
        if status == 404:
            return None
        return dict(self._ok("GET", path, status, data))

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the object unless it exists; an existing one is returned untouched."""
        return self._create_or_get(manifest)[0]

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or three-way merge-patch the existing one when it differs.

        An existing object without this owner's controller reference (someone else's, nobody's,
        or a previous owner's awaiting garbage collection) is never written to: NotOwned.
        """
        desired = with_last_applied(manifest)
        live, created = self._create_or_get(desired)
        if created:
            return live
        meta, kind = desired["metadata"], desired["kind"]
        item = resource_path(desired["apiVersion"], kind, meta.get("namespace"), meta["name"])
        if controller_uid(live) != controller_uid(desired):
            raise NotOwned(kind, meta.get("namespace"), meta["name"], controller_description(live))
        stale = stale_keys(desired, live)
        if not stale and contains(live, desired):
            return live
        status, data = self.request("PATCH", item, three_way_patch(desired, stale), MERGE_PATCH)
        return dict(self._ok("PATCH", item, status, data))

    def _create_or_get(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the existing object, False), else (object, True) once POST created it."""
        meta = manifest["metadata"]
        kind, api_version, ns = manifest["kind"], manifest["apiVersion"], meta.get("namespace")
        existing = self.get(api_version, kind, ns, meta["name"])
        if existing is not None:
            return existing, False
        path = resource_path(api_version, kind, ns)
        status, data = self.request("POST", path, manifest)
        if status != 409:
            return dict(self._ok("POST", path, status, data)), True
        existing = self.get(api_version, kind, ns, meta["name"])
        if existing is None:  # 409 on create, yet no such object: the retry reads again
            raise KubeError(409, "POST", resource_path(api_version, kind, ns, meta["name"]), "")
        return existing, False

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects of one kind in a namespace matching a label selector."""
        path = resource_path(api_version, kind, namespace)
        query = f"{path}?labelSelector={quote(label_selector)}"
        status, data = self.request("GET", query)
        return [dict(item) for item in self._ok("GET", query, status, data).get("items") or []]

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch an object; None when it is gone."""
        path = resource_path(api_version, kind, namespace, name)
        status, data = self.request("PATCH", path, body, MERGE_PATCH)
        if status == 404:
            return None
        return dict(self._ok("PATCH", path, status, data))

    def delete(self, ref: ChildRef, namespace: str, owner_uid: str | None = None) -> bool:
        """Delete a child if it exists (and, given `owner_uid`, is controlled by that owner).

        Read first: a child that is already gone costs no write. Background propagation: a
        Job's API default would orphan its pods.
        """
        live = self.get(ref.api_version, ref.kind, namespace, ref.name)
        if live is None:
            return False
        if owner_uid is not None and controller_uid(live) != owner_uid:
            return False  # not ours: never delete it
        path = resource_path(ref.api_version, ref.kind, namespace, ref.name)
        status, data = self.request("DELETE", path, {"propagationPolicy": "Background"})
        if status == 404:
            return False
        self._ok("DELETE", path, status, data)
        return True

    def patch_status(
        self,
        namespace: str,
        name: str,
        status_body: dict[str, Any],
        resource_version: str | None = None,
    ) -> bool:
        """Merge-patch a ModelDeployment's status subresource; gone objects are ignored.

        With `resource_version` the write is optimistic: False when the object changed since.
        """
        path = resource_path(specmod.API_VERSION, specmod.KIND, namespace, name, "status")
        body: dict[str, Any] = {"status": status_body}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        status, data = self.request("PATCH", path, body, MERGE_PATCH)
        if status == 409 and resource_version is not None:
            return False
        if status != 404:
            self._ok("PATCH", path, status, data)
        return True

    def pod_log(
        self, namespace: str, name: str, container: str, *, tail_lines: int, limit_bytes: int
    ) -> str | None:
        """The last lines of a container's log; None when there is none yet (a waiting
        container is HTTP 400, a gone pod 404). Needs `get` on `pods/log`."""
        path = resource_path("v1", "Pod", namespace, name, "log")
        query = (
            f"{path}?container={quote(container)}&tailLines={tail_lines}&limitBytes={limit_bytes}"
        )
        status, data = self.request("GET", query, text_only=True)
        if status in (400, 404):
            return None
        return str(self._ok("GET", query, status, data))

    def crd_exists(self, name: str) -> bool:
        path = resource_path("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
        status, _ = self.request("GET", path)
        return status == 200
