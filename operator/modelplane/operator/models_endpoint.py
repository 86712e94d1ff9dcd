"""`GET /v1/models` for every routed model behind the default Gateway, answered by the operator.

Upstream has no cluster-wide model list: each pool's endpoint picker answers for its own pods
only, and a GET has no body for body-based routing to read a `model` from. The operator already
knows every ModelDeployment and whether it is Ready and Routed, so it answers: the chart routes
`GET /v1/models` on the Gateway (a request without the model header) to this endpoint.
"""

from __future__ import annotations

import calendar
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelplane.operator import spec as specmod
from modelplane.operator.kube import Kube, KubeError
from modelplane.operator.routing import ROUTED, RoutingDefaults, resolve_gateway
from modelplane.operator.spec import GatewayRef, SpecError

log = logging.getLogger(__name__)
PATH = "/v1/models"
CACHE_SECONDS = 5.0  # a burst of clients costs one LIST


def _true(body: Mapping[str, Any], type_: str) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _created(body: Mapping[str, Any]) -> int:
    stamp = (body.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return 0
    return calendar.timegm(time.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ"))


def routed_models(
    model_deployments: Iterable[Mapping[str, Any]], gateway: GatewayRef, defaults: RoutingDefaults
) -> dict[str, Any]:
    """The OpenAI model list of the Ready and Routed ModelDeployments attached to `gateway`.

    Adapters are listed with their base model as `parent`, as each server lists them itself.
    A name served in two namespaces is listed once (the gateway's route conflict rules decide
    which pool answers it).
    """
    data: dict[str, dict[str, Any]] = {}
    for body in sorted(model_deployments, key=_created):
        meta = body.get("metadata") or {}
        if not (_true(body, "Ready") and _true(body, ROUTED)):
            continue
        try:
            spec = specmod.parse_spec(dict(body.get("spec") or {}))
            ref = resolve_gateway(spec, defaults, str(meta.get("namespace")))
        except SpecError:
            continue
        if ref is None or (ref.namespace, ref.name) != (gateway.namespace, gateway.name):
            continue
        base = specmod.served_model_name(spec, str(meta.get("name")))
        owned_by = str(meta.get("namespace"))
        entries = [(base, None), *((a.name, base) for a in spec.adapters)]
        for model_id, parent in entries:
            data.setdefault(
                model_id,
                {
                    "id": model_id,
                    "object": "model",
                    "created": _created(body),
                    "owned_by": owned_by,
                    "root": model_id if parent is None else None,
                    "parent": parent,
                },
            )
    return {"object": "list", "data": sorted(data.values(), key=lambda m: str(m["id"]))}


class ModelsEndpoint:
    """A small HTTP server in the operator pod: GET /v1/models, from a cached LIST."""

    def __init__(
        self,
        kube: Kube,
        defaults: RoutingDefaults,
        namespaces: tuple[str, ...],
        port: int,
        host: str = "0.0.0.0",
    ) -> None:
        if defaults.gateway is None:
            raise ValueError("the models endpoint needs --default-gateway")
        self.kube, self.defaults, self.gateway = kube, defaults, defaults.gateway
        self.namespaces = namespaces
        self._lock = threading.Lock()
        self._cached: tuple[float, bytes] | None = None
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True

    def body(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > CACHE_SECONDS:
                listing = routed_models(self._list(), self.gateway, self.defaults)
                self._cached = (now, json.dumps(listing).encode())
            return self._cached[1]

    def _list(self) -> list[dict[str, Any]]:
        prefix = f"/apis/{specmod.API_VERSION}"
        exact = self.namespaces and not any(c in n for n in self.namespaces for c in "*?[")
        paths = (
            [f"{prefix}/namespaces/{ns}/{specmod.PLURAL}" for ns in self.namespaces]
            if exact
            else [f"{prefix}/{specmod.PLURAL}"]  # all namespaces, or globs: a cluster-wide list
        )
        items: list[dict[str, Any]] = []
        for path in paths:
            status, data = self.kube.request("GET", path)
            if status != 200:
                raise KubeError(status, "GET", path, str(data)[:300])
            items += data.get("items") or []
        return items

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's method name
                if self.path.split("?", 1)[0].rstrip("/") != PATH:
                    self._send(404, _error("Not found: only GET /v1/models is served here"))
                    return
                try:
                    body = endpoint.body()
                except KubeError as error:
                    log.warning("listing ModelDeployments failed: %s", error)
                    self._send(503, _error("the model list is unavailable; retry shortly"))
                    return
                self._send(200, body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("models endpoint: " + format, *args)

        return Handler

    def start(self) -> None:
        threading.Thread(
            target=self.server.serve_forever, name="models-endpoint", daemon=True
        ).start()


def _error(message: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    ).encode()
