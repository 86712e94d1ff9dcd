"""What every API endpoint does around its work: parse the body, run the work until the
client leaves, answer JSON or an SSE stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from modelplane.server.errors import InvalidRequest, invalid_request_from
from modelplane.server.middleware import CLIENT_CLOSED_REQUEST
from modelplane.server.request_record import RequestRecord
from modelplane.server.streaming import stream_response

if TYPE_CHECKING:
    from modelplane.server.engine import Engine

Body = TypeVar("Body", bound=BaseModel)
T = TypeVar("T")
Work = Awaitable[dict[str, Any] | AsyncIterator[bytes]]


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code, headers, media_type="application/json")


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


async def respond(request: Request, work: Work) -> Response:
    """A dict becomes JSON, an iterator of SSE frames a stream; a gone client gets nothing."""
    result = await unless_disconnected(request, work)
    if result is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if isinstance(result, dict):
        return json_response(result)
    return stream_response(result)


async def handle(
    request: Request,
    body_model: type[Body],
    create: Callable[[Body, Engine, RequestRecord], Work],
    engine: Engine,
) -> Response:
    """One generation endpoint: parse the body into `body_model`, run `create` on it."""
    body = parse_request(await request.body(), body_model)
    return await respond(request, create(body, engine, record_of(request)))


def record_of(request: Request) -> RequestRecord:
    """The request's record, which the middleware created."""
    record: RequestRecord = request.state.record
    return record
