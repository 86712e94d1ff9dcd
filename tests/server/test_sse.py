"""The stream chat and completions share: frames output by output, usage, error frame,
engine abort, [DONE]."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import orjson
import pytest

from modelplane.server.errors import InvalidRequest
from modelplane.server.streaming import DONE_FRAME, finish_stream


class EngineOutputs:
    """Stands in for the engine's output iterator (after its first output): yields `items`,
    then fails with `fail_with` if given; records whether it was closed (= aborted)."""

    def __init__(self, *items: bytes, fail_with: Exception | None = None) -> None:
        self.items = list(items)
        self.fail_with = fail_with
        self.closed = False

    def __aiter__(self) -> EngineOutputs:
        return self

    async def __anext__(self) -> bytes:
        if self.items:
            return self.items.pop(0)
        if self.fail_with is not None:
            raise self.fail_with
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def frames_of(item: bytes) -> list[bytes]:
    """Each stand-in output is its own frame."""
    return [item]


def stream(
    outputs: EngineOutputs,
    first: bytes | None,
    *,
    usage_frame: Callable[[], bytes] | None = None,
    request_id: str = "r",
    opening: Sequence[bytes] = (),
) -> AsyncIterator[bytes]:
    return finish_stream(
        outputs,
        first,
        frames_of,
        opening=opening,
        usage_frame=usage_frame,
        request_id=request_id,
    )


async def collect(frames: AsyncIterator[bytes]) -> list[bytes]:
    return [frame async for frame in frames]


async def test_opening_then_each_outputs_frames_then_usage_then_done() -> None:
    outputs = EngineOutputs(b"data: 2\n\n")
    frames = stream(
        outputs, b"data: 1\n\n", usage_frame=lambda: b"data: usage\n\n", opening=[b"data: 0\n\n"]
    )
    assert await collect(frames) == [
        b"data: 0\n\n",
        b"data: 1\n\n",
        b"data: 2\n\n",
        b"data: usage\n\n",
        DONE_FRAME,
    ]
    assert outputs.closed


async def test_no_usage_frame_unless_asked() -> None:
    assert await collect(stream(EngineOutputs(), b"data: 1\n\n")) == [b"data: 1\n\n", DONE_FRAME]


async def test_an_openai_error_mid_stream_becomes_an_error_frame_then_done() -> None:
    outputs = EngineOutputs(fail_with=InvalidRequest("bad stop", param="stop"))
    frames = await collect(stream(outputs, b"data: 1\n\n", usage_frame=lambda: b"usage"))
    assert frames[0] == b"data: 1\n\n"
    error = orjson.loads(frames[1].removeprefix(b"data: "))["error"]
    assert error == {
        "message": "bad stop",
        "type": "invalid_request_error",
        "param": "stop",
        "code": None,
    }
    assert frames[2:] == [DONE_FRAME]  # no usage after a failure
    assert outputs.closed


async def test_a_bug_mid_stream_is_a_generic_500_frame_without_the_traceback(caplog) -> None:  # type: ignore[no-untyped-def]
    outputs = EngineOutputs()

    def failing_frames(item: bytes) -> list[bytes]:
        raise KeyError("secret internals")

    frames = await collect(
        finish_stream(outputs, b"x", failing_frames, usage_frame=None, request_id="r9")
    )
    error = orjson.loads(frames[0].removeprefix(b"data: "))["error"]
    assert error["type"] == "server_error"
    assert "secret" not in error["message"]
    assert frames[1:] == [DONE_FRAME]
    assert outputs.closed
    assert "stream r9 failed" in caplog.text  # the traceback goes to the log instead


async def test_a_client_that_goes_away_closes_the_engine_request() -> None:
    outputs = EngineOutputs(b"data: 2\n\n")
    frames = stream(outputs, b"data: 1\n\n")
    assert await anext(frames) == b"data: 1\n\n"
    await frames.aclose()  # type: ignore[attr-defined]  # what EngineStream does when the client has gone
    assert outputs.closed


async def test_a_response_whose_client_is_gone_closes_the_engine_request_at_once() -> None:
    """The send fails while the frames wait at a yield: EngineStream closes them, not the GC."""
    from modelplane.server.streaming import EngineStream

    outputs = EngineOutputs(b"data: 2\n\n")
    frames = stream(outputs, b"data: 1\n\n")

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            raise OSError("the client went away")

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "POST"}
    with pytest.raises(Exception):  # noqa: B017 (Starlette's ClientDisconnect or the OSError)
        await EngineStream(frames, media_type="text/event-stream")(scope, receive, send)
    assert outputs.closed


async def test_frames_skip_the_inner_layers_but_the_start_and_the_end_go_through_them() -> None:
    """The middleware's layers see the response start and its end (request id, 499 accounting);
    the frames between go to the `send` the middleware left in the scope."""
    from modelplane.server.middleware import BODY_SEND
    from modelplane.server.streaming import EngineStream

    through_layers: list[dict[str, object]] = []
    direct: list[dict[str, object]] = []

    async def layered_send(message: dict[str, object]) -> None:
        through_layers.append(message)

    async def body_send(message: dict[str, object]) -> None:
        direct.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    outputs = EngineOutputs(b"data: 2\n\n")
    frames = stream(outputs, b"data: 1\n\n")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": "POST",
        BODY_SEND: body_send,
    }
    await EngineStream(frames, media_type="text/event-stream")(scope, receive, layered_send)
    assert [m["type"] for m in through_layers] == ["http.response.start", "http.response.body"]
    assert through_layers[1] == {
        "type": "http.response.body",
        "body": DONE_FRAME,
        "more_body": False,
    }
    assert direct == [
        {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True},
    ]
    assert outputs.closed


async def test_the_servers_send_goes_into_the_scope_outside_every_layer() -> None:
    from modelplane.server.middleware import BODY_SEND, ServerSendInScope

    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen["body_send"] = scope[BODY_SEND]

    async def server_send(message: dict[str, object]) -> None:
        pass

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await ServerSendInScope(app)({"type": "http"}, receive, server_send)  # type: ignore[arg-type]
    assert seen["body_send"] is server_send
