"""The one ASGI middleware around every request: request id, auth, admission, bookkeeping.

Pure ASGI (no BaseHTTPMiddleware): it adds a header and watches the status on the way out,
and after the response (or a client disconnect) updates metrics and writes the usage line once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelplane.server.auth import OPEN_PATHS
from modelplane.server.errors import InternalError, OpenAIError, error_response
from modelplane.server.metrics import ANONYMOUS_KEY
from modelplane.server.rate_limit_headers import rate_limit_headers
from modelplane.server.request_record import RequestRecord
from modelplane.server.state import ServerState
from modelplane.server.usage import log_usage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("modelplane.server")

GENERATION_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
API_ROUTES = GENERATION_ROUTES | {"/v1/models"}
# nginx's "client closed request": the client went away before the response was complete.
CLIENT_CLOSED_REQUEST = 499
MAX_REQUEST_ID_LENGTH = 128
# The scope key under which the server's own `send` waits for an SSE stream's body frames
# (streaming.EngineStream): every layer between (Starlette's error and exception handling,
# RequestMiddleware's `send_with_id`) looks only at the response's start and its last message.
# `ServerSendInScope` sets it outside them all; without it (an app driven in-process) the
# frames take the same path as every other message.
BODY_SEND = "modelplane.body_send"


def request_id_from(headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes | None]:
    """The client's `x-request-id` when it is sane, else a new one; plus the Authorization value."""
    request_id: str | None = None
    authorization: bytes | None = None
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= MAX_REQUEST_ID_LENGTH and value.isascii():
                candidate = value.decode()
                request_id = candidate if candidate.isprintable() else None
        elif name == b"authorization":
            authorization = value
    return request_id or uuid.uuid4().hex, authorization


def route_label(path: str) -> str:
    """The metrics label for a path; anything unknown collapses into one value."""
    if path in API_ROUTES:
        return path
    return "/v1/models/{model}" if path.startswith("/v1/models/") else "other"


class ServerSendInScope:
    """The outermost layer, around Starlette's own: leaves the server's `send` in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[BODY_SEND] = send
        await self.app(scope, receive, send)


class RequestMiddleware:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        request_id, authorization = request_id_from(scope["headers"])
        id_header = (b"x-request-id", request_id.encode())
        response: dict[str, Any] = {"status": 0, "complete": False, "rate_key": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                extra = [id_header]
                if response["rate_key"] is not None:  # authenticated, with per-key limits
                    extra += rate_limit_headers(self.state.rate_limits, response["rate_key"])
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                response["complete"] = True
            await send(message)

        if path in OPEN_PATHS:
            await self.guarded(scope, receive, send_with_id, response, request_id)
            return

        state = self.state
        record = RequestRecord(request_id=request_id, route=route_label(path))
        scope.setdefault("state", {})["record"] = record
        generation = path in GENERATION_ROUTES and scope["method"] == "POST"
        counted = False
        try:
            record.key_name = state.auth.authenticate(authorization)
            record.allowed_models = state.auth.allowed_models(record.key_name)
            if state.rate_limits.enabled:
                response["rate_key"] = record.key_name or ANONYMOUS_KEY
            if generation:
                state.require_engine()
                if state.rate_limits.enabled:
                    state.rate_limits.admit(record.key_name or ANONYMOUS_KEY)
                state.request_started()
                counted = True
                async with state.limiter.slot():
                    await self.guarded(scope, receive, send_with_id, response, request_id)
            else:
                await self.guarded(scope, receive, send_with_id, response, request_id)
        except OpenAIError as error:
            if response["status"]:  # too late for an error response: the body has begun
                logger.warning("Request %s failed mid-response: %s", request_id, error.message)
            else:
                await error_response(error)(scope, receive, send_with_id)
        finally:
            if counted:
                state.request_finished()
                # Only what was served is charged: a refused request (4xx: too long, invalid...)
                # costs the key no tokens, even when its prompt was tokenized to find that out.
                if state.rate_limits.enabled and 200 <= response["status"] < 300:
                    tokens = record.prompt_tokens + record.completion_tokens
                    state.rate_limits.charge(record.key_name or ANONYMOUS_KEY, tokens)
            record.finished_at = time.perf_counter()
            record.status_code = (
                response["status"] if response["complete"] else CLIENT_CLOSED_REQUEST
            )
            state.metrics.observe_request(record, state.known_models)
            log_usage(record)

    async def guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        response: dict[str, Any],
        request_id: str,
    ) -> None:
        """Run the app; a bug becomes a 500 in OpenAI's shape, its traceback stays in the log."""
        try:
            await self.app(scope, receive, send)
        except OpenAIError:
            raise
        except Exception:
            logger.exception("Unhandled error in request %s", request_id)
            if not response["status"]:
                error = InternalError("The server had an error processing the request.")
                await error_response(error)(scope, receive, send)
