"""The FastAPI app: thin routes, the engine's lifetime in the lifespan, errors in OpenAI's shape.

`init_state` (state.py) builds what the server knows; `build_app` wires routes, middleware and
exception handlers around it, as vLLM's api_server separates the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from modelplane.server import __version__
from modelplane.server.body_limit import RequestBodyLimit
from modelplane.server.errors import (
    InvalidRequest,
    NotFound,
    OpenAIError,
    error_body,
)
from modelplane.server.metrics import render_metrics
from modelplane.server.middleware import CLIENT_CLOSED_REQUEST, RequestMiddleware
from modelplane.server.request_record import RequestRecord
from modelplane.server.settings import ServerSettings
from modelplane.server.state import Phase, ServerState, init_state

logger = logging.getLogger("modelplane.server")

Body = TypeVar("Body", bound=BaseModel)
T = TypeVar("T")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code, headers, media_type="application/json")


def error_response(error: OpenAIError) -> Response:
    return json_response(error.body(), error.status_code, error.headers())


# --- request parsing -------------------------------------------------------------------------


def validation_param(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's error location as OpenAI's `param`: `messages[0].content`."""
    param = ""
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part != "body":
            param += f".{part}" if param else str(part)
    return param or None


def invalid_request_from(error: ValidationError | RequestValidationError) -> InvalidRequest:
    first = error.errors()[0]
    param = validation_param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "Invalid request."))
    message = message.removeprefix("Value error, ")
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)


def parse_request(raw: bytes, model: type[Body]) -> Body:
    """JSON bytes -> request model; malformed JSON or a bad field is a 400, never a 422."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {error}. "
            "The body must be a JSON object."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_request_from(error) from None


# --- client disconnects ----------------------------------------------------------------------


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client goes away. Only safe once the body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work` until it finishes or the client disconnects (then cancel it: None).

    Cancelling the endpoint coroutine aborts its engine request. Like vLLM's
    `with_cancellation`, this listens for `http.disconnect` rather than polling.
    """
    work_task = asyncio.ensure_future(work)
    disconnect_task = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({work_task, disconnect_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnect_task.cancel()
        if not work_task.done():
            work_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work_task
    if work_task.cancelled():
        return None
    return work_task.result()


class EngineStream(StreamingResponse):
    """An SSE response that closes its frame iterator however the response ends.

    Starlette cancels a stream when the client goes away but leaves the iterator to the
    garbage collector; when it was suspended at a blocked send, only closing it runs
    `finish_stream`'s cleanup, which aborts the engine request.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def respond(
    request: Request, work: Awaitable[dict[str, Any] | AsyncIterator[bytes]]
) -> Response:
    """A dict becomes JSON, an iterator of SSE frames a stream; a gone client gets nothing."""
    result = await unless_disconnected(request, work)
    if result is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if isinstance(result, dict):
        return json_response(result)
    return EngineStream(result, media_type="text/event-stream", headers=SSE_HEADERS)


def record_of(request: Request) -> RequestRecord:
    record: RequestRecord = request.state.record
    return record


# --- lifespan ----------------------------------------------------------------------------------


async def run_engine(state: ServerState) -> None:
    """Load the engine, serve until told to stop, shut it down. A failure ends the process."""
    from modelplane.server.engine import LoRAModulePath, open_engine

    settings = state.settings
    started = time.perf_counter()
    try:
        async with open_engine(
            settings.engine_args,
            settings.served_model_names,
            [LoRAModulePath(name=m.name, path=m.path) for m in settings.lora_modules],
        ) as engine:
            state.engine_ready(engine)
            logger.info(
                "modelplane ready in %.1f s: %s (models: %s)",
                time.perf_counter() - started,
                settings.base_url,
                ", ".join(sorted(state.known_models)),
            )
            await state.stop_engine.wait()
    except Exception:
        logger.exception("The engine failed; exiting")
        state.phase = Phase.FAILED
        if state.request_exit is not None:
            state.request_exit(1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The engine loads in a task: uvicorn's startup does not wait on it and shutdown stops it.

    Requests that arrive before it is ready get 503 and /ready says 503. (vLLM builds its
    engine synchronously, so the event loop answers them once that construction returns.)
    """
    state: ServerState = app.state.modelplane
    engine_task = asyncio.create_task(run_engine(state), name="modelplane-engine")
    try:
        yield
    finally:
        state.stop_engine.set()
        await engine_task


# --- app ---------------------------------------------------------------------------------------


def build_app(settings: ServerSettings, state: ServerState | None = None) -> FastAPI:
    state = state or init_state(settings)
    app = FastAPI(
        title="modelplane",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.modelplane = state
    add_api_routes(app, state)
    add_probe_routes(app, state)
    add_exception_handlers(app)
    # Added first, so it runs inside RequestMiddleware: a 413 is logged and counted like any error.
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestMiddleware, state=state)
    return app


def add_api_routes(app: FastAPI, state: ServerState) -> None:
    from modelplane.server.chat import create_chat_completion
    from modelplane.server.completions import create_completion
    from modelplane.server.embeddings import create_embedding
    from modelplane.server.models import list_models, retrieve_model
    from modelplane.server.protocol import (
        ChatCompletionRequest,
        CompletionRequest,
        EmbeddingRequest,
    )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = parse_request(await request.body(), ChatCompletionRequest)
        work = create_chat_completion(body, state.require_engine(), record_of(request))
        return await respond(request, work)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_request(await request.body(), CompletionRequest)
        work = create_completion(body, state.require_engine(), record_of(request))
        return await respond(request, work)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = parse_request(await request.body(), EmbeddingRequest)
        work = create_embedding(body, state.require_engine(), record_of(request))
        return await respond(request, work)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        return json_response(list_models(state.require_engine(), record_of(request)))

    @app.get("/v1/models/{model_id:path}")
    async def model(request: Request, model_id: str) -> Response:
        return json_response(retrieve_model(state.require_engine(), model_id, record_of(request)))


def add_probe_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health")
    async def health() -> Response:
        """Liveness: the process serves HTTP and the engine, once loaded, is alive."""
        if state.engine is not None and state.phase is not Phase.DRAINING:
            await state.engine.check_health()
        if state.phase is Phase.FAILED:
            return json_response({"status": "failed"}, 503)
        return json_response({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        """Readiness: the engine is loaded and the server is not draining."""
        if state.phase is Phase.READY:
            return json_response({"status": "ready"})
        message = f"The server is {state.phase.value}."
        return json_response(
            error_body(message, "service_unavailable", code=state.phase.value), 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    @app.get("/version")
    async def version() -> Response:
        return json_response({"version": __version__, "vllm_version": vllm_version()})


def vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:
        return "unknown"


def add_exception_handlers(app: FastAPI) -> None:
    async def openai_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, OpenAIError)
        return error_response(error)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 404:
            return error_response(NotFound(f"Unknown route: {request.method} {request.url.path}"))
        body = error_body(str(error.detail), "invalid_request_error", code=str(error.status_code))
        return json_response(body, error.status_code, dict(error.headers or {}))

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(invalid_request_from(error))

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        OpenAIError: openai_error,
        StarletteHTTPException: http_error,
        RequestValidationError: validation_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
