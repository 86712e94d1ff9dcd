"""A stateful fake Kubernetes API (kmock) that a real kopf operator process can run against.

Usage (sync; the emulator runs on its own event loop in a background thread)::

    from tests.operator.kube_emulator import start_emulator

    with start_emulator(namespaces=["default"]) as (server_url, kubeconfig_path, emulator):
        env = {**os.environ, "KUBECONFIG": str(kubeconfig_path)}
        subprocess.Popen([sys.executable, "-m", "modelplane.operator", "-n", "default", ...], env=env)
        httpx.post(f"{server_url}/apis/modelplane.io/v1alpha1/namespaces/default/modeldeployments", json=md)
        emulator.objects["apps/v1/deployments", "default", "name"]   # read-only peeks are fine

Talk to it over HTTP (e.g. `httpx`) from tests: it is a plain Kubernetes-shaped REST API.
It covers kmock 0.8's gaps for kopf: (1) `uid`, `resourceVersion`, `generation`,
`creationTimestamp` and names from `generateName` (kopf's Events; without it a second Event is
a 409) are stamped on create/patch (kopf JSON-patches with a `test` on the resourceVersion; the
kubernetes client wants owner uids), and a merge patch carrying a stale
`metadata.resourceVersion` gets 409 Conflict like on a real API server;
(2) `/api/v1/namespaces[/<name>]` paths parse (kopf lists namespaces); (3) only PATCH exists,
no PUT (the operator needs none); (4) a Deployment's `spec.selector` is immutable (422 Invalid,
as apps/v1 validation answers); (5) `GET pods/<name>/log` serves the text a test put in
`emulator.pod_logs` (the kubelet's part), honouring `tailLines` and `limitBytes`. Injected
faults (`emulator.faults`) answer an error status, or, for `HANG`, hold the request unanswered
until `emulator.release_hung()` (always called when the emulator stops, so a test never stalls
on them). Every write request (POST, PATCH, DELETE) is recorded in
`emulator.writes`, whatever its answer, so a test can count what a restart sends.
It is no kube-apiserver: merge patches only, no CRD schema/CEL, no defaults, no garbage
collection — those are tested with the CRD schema and documented in docs/operator.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp.web
import kmock
import kubernetes
from kmock._internal import enums, parsing


def _custom(kind: str, shortnames: set[str], subresources: set[str]) -> kmock.ResourceInfo:
    """A namespaced custom kind with every verb, as the API server serves a CRD's."""
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    return kmock.ResourceInfo(
        kind=kind,
        singular=kind.lower(),
        namespaced=True,
        shortnames=shortnames,
        subresources=subresources,
        verbs=verbs,
    )


# The operator's own and optional resources, next to kmock's bundled built-ins.
EXTRA_RESOURCES: dict[str, kmock.ResourceInfo] = {
    "modelplane.io/v1alpha1/modeldeployments": _custom(
        "ModelDeployment", {"md"}, {"status", "scale"}
    ),
    # spec.routing (Gateway API's own kinds are among kmock's bundled ones).
    "inference.networking.k8s.io/v1/inferencepools": _custom(
        "InferencePool", {"infpool"}, {"status"}
    ),
    # LeaderWorkerSet (kubernetes-sigs/lws): served like every extra kind here; whether the
    # cluster "has" it is its CRD object (`crd_object`), which the operator checks.
    "leaderworkerset.x-k8s.io/v1/leaderworkersets": _custom(
        "LeaderWorkerSet", {"lws"}, {"status", "scale"}
    ),
    "keda.sh/v1alpha1/scaledobjects": _custom("ScaledObject", set(), {"status"}),
}

# An injected fault that answers nothing: the request is held until `release_hung()`, as when
# an API server (or an admission webhook it waits on) stops answering for one object.
HANG = 0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NAMESPACES_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?/?$")
_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 cannot parse /api/v1/namespaces (it reads 'namespaces' as a namespace marker)."""
    match = _NAMESPACES_PATH.match(path)
    if match:
        return parsing.ParsedPath(group="", version="v1", plural="namespaces", name=match.group(1))
    return _original_parse_path(path)


parsing.parse_path = _parse_path


def _object_key(request: kmock.Request) -> kmock.ObjectKey | None:
    """The key of the object a request names in `objects`; None for a request naming none."""
    if request.resource is None or request.name is None:
        return None
    return (request.resource, request.namespace, request.name)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StampingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the metadata a real API server stamps on every write.

    kmock matches each request against its reactions by scanning the whole request log, so a
    request costs O(requests so far); only the in-flight requests and the last
    `REQUEST_HISTORY` are kept (enough for assertions, and 200 ModelDeployments stay fast).
    """

    REQUEST_HISTORY = 8
    _versions = itertools.count(1)
    _inflight: set[kmock.Request]

    @property
    def writes(self) -> list[tuple[str, str, str | None, str | None]]:
        """(method, plural, namespace, name) of every write request received, in order."""
        return self.__dict__.setdefault("_writes", [])

    @property
    def faults(self) -> dict[tuple[str, str, str | None], int]:
        """Injected faults: (method, plural, name or None for any) -> the HTTP status to answer
        instead, or HANG to hold the request unanswered until `release_hung()`."""
        return self.__dict__.setdefault("_faults", {})

    @property
    def received(self) -> int:
        """How many requests arrived so far, of any kind."""
        return int(self.__dict__.get("_received", 0))

    @property
    def peak_inflight(self) -> int:
        """The most requests in flight at once so far (reset by setting `_peak_inflight` to 0)."""
        return int(self.__dict__.get("_peak_inflight", 0))

    @property
    def hung(self) -> int:
        """How many requests a HANG fault holds right now (a client that gave up may still count)."""
        return int(self.__dict__.get("_hung", 0))

    @property
    def held(self) -> int:
        """How many requests a HANG fault has held so far, released or not."""
        return int(self.__dict__.get("_held", 0))

    def release_hung(self) -> None:
        """Let every held request (and any later one a HANG fault matches) through; thread-safe."""
        self.__dict__["_released"] = True
        released, loop = self.__dict__.get("_release"), self.__dict__.get("_loop")
        if released is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(released.set)

    async def _hang(self) -> None:
        if self.__dict__.get("_released"):
            return
        if "_release" not in self.__dict__:
            self.__dict__["_loop"] = asyncio.get_running_loop()
            self.__dict__["_release"] = asyncio.Event()
        self.__dict__["_hung"] = self.hung + 1
        self.__dict__["_held"] = self.held + 1
        try:
            await self.__dict__["_release"].wait()
        finally:
            self.__dict__["_hung"] = self.hung - 1

    @property
    def created_at(self) -> dict[tuple[str, str | None, str], float]:
        """time.monotonic() when each object's create request arrived, by (plural, namespace, name).

        Latency without polling: created_at[("deployments", ns, n)] - created_at[("modeldeployments", ns, n)].
        """
        return self.__dict__.setdefault("_created_at", {})

    @property
    def pod_logs(self) -> dict[tuple[str, str, str], Path]:
        """A container's log, played by a file: (namespace, pod, container) -> path."""
        return self.__dict__.setdefault("_pod_logs", {})

    def _pod_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """GET pods/<name>/log as the API server proxies it from the kubelet: text/plain, the
        last `tailLines` lines, at most `limitBytes`; 404 for a missing pod, 400 while the
        container has not started (no log yet)."""
        key = _object_key(request)
        if key is None or key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesError(status=404, reason="NotFound", message="pod not found")
        container = request.params.get("container", "")
        path = self.pod_logs.get((str(request.namespace), str(request.name), container))
        if path is None or not path.is_file():
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'container "{container}" in pod "{request.name}" is waiting to start',
            )
        data = path.read_bytes()
        if "tailLines" in request.params:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(request.params["tailLines"]) :])
        if "limitBytes" in request.params:
            data = data[: int(request.params["limitBytes"])]
        return aiohttp.web.Response(body=data, content_type="text/plain")

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        inflight = self.__dict__.setdefault("_inflight", set())
        inflight.add(request)
        self.__dict__["_received"] = self.received + 1
        self.__dict__["_peak_inflight"] = max(self.peak_inflight, len(inflight))
        recent = self._requests[-self.REQUEST_HISTORY :]
        recent_ids = {id(r) for r in recent}
        self._requests[:] = [
            r for r in self._requests if r in inflight and id(r) not in recent_ids
        ] + recent
        try:
            if request.resource is not None and request.method.upper() in WRITE_METHODS:
                self.writes.append(
                    (
                        request.method.upper(),
                        str(request.resource.plural),
                        request.namespace,
                        request.name,
                    )
                )
            if (
                request.resource is not None
                and str(request.resource.plural) == "pods"
                and request.subresource == "log"
                and request.method.upper() == "GET"
            ):
                return self._pod_log(request)
            if request.resource is not None:
                method, plural = request.method.upper(), str(request.resource.plural)
                fault = self.faults.get((method, plural, request.name))
                if fault is None:
                    fault = self.faults.get((method, plural, None))
                if fault == HANG:
                    await self._hang()  # then answered as usual
                elif fault is not None:
                    raise kmock.KubernetesError(
                        status=fault, reason="Injected", message="injected by the test"
                    )
                if request.action == enums.action.CREATE and isinstance(request.data, dict):
                    self._stamp_create(request)
                elif request.action == enums.action.UPDATE and request.data is not None:
                    self._stamp_update(request)
            return await super()._handle(request)
        finally:
            inflight.discard(request)

    def _stamp_create(self, request: kmock.Request) -> None:
        arrived = time.monotonic()
        meta = request.data.setdefault("metadata", {})
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        if not meta.get("name") and meta.get("generateName"):  # kopf's Events use generateName
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        meta.setdefault("creationTimestamp", _now())
        plural = request.resource.plural if request.resource is not None else ""
        self.created_at.setdefault(
            (str(plural), meta.get("namespace"), str(meta.get("name"))), arrived
        )

    def _stamp_update(self, request: kmock.Request) -> None:
        key = _object_key(request)
        current = self.objects[key] if key is not None and key in self.objects else None
        if current is None or current.deleted:
            return  # kmock answers 404
        meta = current.get("metadata", {})
        version = str(next(self._versions))
        generation = int(meta.get("generation", 1))
        if isinstance(request.data, list):  # JSON patch (kopf): append the stamps after its tests
            touches_spec = any(str(op.get("path", "")).startswith("/spec") for op in request.data)
            request.data.append(
                {"op": "add", "path": "/metadata/resourceVersion", "value": version}
            )
            if touches_spec and request.subresource is None:
                request.data.append(
                    {"op": "add", "path": "/metadata/generation", "value": generation + 1}
                )
        elif isinstance(request.data, dict):  # merge patch
            patch_meta = request.data.setdefault("metadata", {})
            if not isinstance(patch_meta, dict):
                return
            expected = patch_meta.get("resourceVersion")
            if expected is not None and str(expected) != str(meta.get("resourceVersion")):
                # Optimistic concurrency, as the API server does for a patch carrying a version.
                raise kmock.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message="the object has been modified; please apply your changes to the latest version",
                )
            new_spec = request.data.get("spec")
            if (
                request.resource is not None
                and str(request.resource.plural) == "deployments"
                and isinstance(new_spec, dict)
                and "selector" in new_spec
                and _merged(current["spec"].get("selector"), new_spec["selector"])
                != current["spec"].get("selector")
            ):
                # apps/v1 validation: a Deployment's selector cannot change after creation.
                raise kmock.KubernetesError(
                    status=422,
                    reason="Invalid",
                    message=f"Deployment.apps {request.name!r} is invalid: spec.selector: "
                    "Invalid value: field is immutable",
                )
            patch_meta["resourceVersion"] = version
            if (
                request.subresource is None
                and new_spec is not None
                and _merged(current.get("spec") or {}, new_spec) != (current.get("spec") or {})
            ):
                patch_meta["generation"] = generation + 1


def _merged(value: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(value, dict):
        return patch
    result = dict(value)
    for key, item in patch.items():
        if item is None:
            result.pop(key, None)
        else:
            result[key] = _merged(value.get(key), item)
    return result


def crd_object(name: str) -> dict[str, Any]:
    """A minimal CustomResourceDefinition `plural.group` (no schema): POST it to
    /apis/apiextensions.k8s.io/v1/customresourcedefinitions and `Kube.crd_exists(name)` holds."""
    plural, _, group = name.partition(".")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": group, "names": {"plural": plural}, "scope": "Namespaced"},
    }


def write_kubeconfig(server_url: str, path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "current-context: emulator\n"
        "clusters:\n"
        f"- name: emulator\n  cluster:\n    server: {server_url}\n"
        "users:\n"
        "- name: emulator\n  user:\n    token: emulator-token\n"
        "contexts:\n"
        "- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n"
        "    namespace: default\n"
    )
    return path


class Emulator(NamedTuple):
    server_url: str
    kubeconfig_path: Path
    emulator: StampingEmulator

    def api_client(self) -> kubernetes.client.ApiClient:
        """The kubernetes client configured by this emulator's kubeconfig, as the operator's is."""
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig_path), client_configuration=config
        )
        return kubernetes.client.ApiClient(configuration=config)


@contextlib.contextmanager
def start_emulator(
    namespaces: Iterable[str] = ("default",),
    kubeconfig_dir: Path | None = None,
) -> Iterator[Emulator]:
    """Serve a StampingEmulator on a free loopback port from a background thread."""
    emulator = StampingEmulator()
    emulator.resources.load_bundled()
    for key, info in EXTRA_RESOURCES.items():
        emulator.resources[key] = info
    for ns in namespaces:
        emulator.objects["v1/namespaces", None, ns] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        }

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    url: list[str] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with emulator, kmock.Server(emulator) as server:
                url.append(str(server.url).rstrip("/"))
                ready.set()
                await stop.wait()
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if failure or not url:
        raise RuntimeError(f"the Kubernetes emulator did not start: {failure}")
    owned_dir = None
    if kubeconfig_dir is None:
        owned_dir = contextlib.ExitStack()
        import tempfile

        kubeconfig_dir = Path(owned_dir.enter_context(tempfile.TemporaryDirectory()))
    kubeconfig = write_kubeconfig(url[0], kubeconfig_dir / "kubeconfig")
    try:
        yield Emulator(url[0], kubeconfig, emulator)
    finally:
        assert stop is not None
        emulator.release_hung()  # held requests end before the server stops
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
        if owned_dir is not None:
            owned_dir.close()
