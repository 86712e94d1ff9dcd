"""The FastAPI app: routes, middleware and error handlers around the server's state, and the
engine's lifetime in the lifespan.

`init_state` (state.py) builds what the server knows; `build_app` wires routes, middleware and
exception handlers around it, as vLLM's api_server separates the two. The work behind each
route lives in its own module (chat.py, completions.py, ...; endpoint.py around them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.responses import Response

from modelplane.server import __version__
from modelplane.server.body_limit import RequestBodyLimit
from modelplane.server.endpoint import handle, json_response, record_of
from modelplane.server.errors import add_exception_handlers, error_body
from modelplane.server.metrics import render_metrics
from modelplane.server.middleware import RequestMiddleware
from modelplane.server.openapi import install_openapi
from modelplane.server.settings import ServerSettings
from modelplane.server.state import Phase, ServerState, init_state

logger = logging.getLogger("modelplane.server")


# --- lifespan ----------------------------------------------------------------------------------


async def run_engine(state: ServerState) -> None:
    """Load the engine, serve until told to stop, shut it down. A failure ends the process."""
    from vllm.utils.gc_utils import freeze_gc_heap

    from modelplane.server.engine import open_engine

    settings = state.settings
    started = time.perf_counter()
    try:
        async with open_engine(
            settings.engine_args,
            settings.served_model_names,
            settings.lora_modules,
            state.engine_client_config,
        ) as engine:
            # As vLLM's own server does: what startup built stays, so the collector stops
            # walking it. Unfrozen, each full collection stalled every stream for ~0.4 s.
            freeze_gc_heap()
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
        state.leave_ready(Phase.FAILED)
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
        openapi_url="/openapi.json",
    )
    install_openapi(app)
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
        engine = state.require_engine()
        return await handle(request, ChatCompletionRequest, create_chat_completion, engine)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle(request, CompletionRequest, create_completion, state.require_engine())

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await handle(request, EmbeddingRequest, create_embedding, state.require_engine())

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
        """Readiness: the engine is loaded, the server is not draining, nor is any front end."""
        if state.phase is not Phase.READY:
            message = f"The server is {state.phase.value}."
            return json_response(
                error_body(message, "service_unavailable", code=state.phase.value), 503
            )
        front_ends = state.front_ends_not_ready()
        if front_ends is not None:
            return json_response(
                error_body(front_ends, "service_unavailable", code="front_ends_not_ready"), 503
            )
        return json_response({"status": "ready"})

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
