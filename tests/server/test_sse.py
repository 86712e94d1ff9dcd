"""The stream epilogue shared by chat and completions: usage, error frame, engine abort, [DONE]."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from modelplane.server.errors import InvalidRequest
from modelplane.server.streaming import DONE_FRAME, finish_stream


class EngineOutputs:
    """Stands in for the engine's output iterator: records whether it was closed (= aborted)."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> EngineOutputs:
        return self

    async def __anext__(self) -> None:
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def chunks(*frames: bytes, fail_with: Exception | None = None) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
    if fail_with is not None:
        raise fail_with


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [frame async for frame in stream]


async def test_chunks_then_usage_then_done_and_the_engine_request_is_closed() -> None:
    outputs = EngineOutputs()
    stream = finish_stream(
        chunks(b"data: 1\n\n", b"data: 2\n\n"),
        outputs,
        usage_frame=lambda: b"data: usage\n\n",
        request_id="r1",
    )
    assert await collect(stream) == [b"data: 1\n\n", b"data: 2\n\n", b"data: usage\n\n", DONE_FRAME]
    assert outputs.closed


async def test_no_usage_frame_unless_asked() -> None:
    stream = finish_stream(
        chunks(b"data: 1\n\n"), EngineOutputs(), usage_frame=None, request_id="r"
    )
    assert await collect(stream) == [b"data: 1\n\n", DONE_FRAME]


async def test_an_openai_error_mid_stream_becomes_an_error_frame_then_done() -> None:
    outputs = EngineOutputs()
    failing = chunks(b"data: 1\n\n", fail_with=InvalidRequest("bad stop", param="stop"))
    frames = await collect(
        finish_stream(failing, outputs, usage_frame=lambda: b"usage", request_id="r")
    )
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
    failing = chunks(fail_with=KeyError("secret internals"))
    frames = await collect(finish_stream(failing, outputs, usage_frame=None, request_id="r9"))
    error = orjson.loads(frames[0].removeprefix(b"data: "))["error"]
    assert error["type"] == "server_error"
    assert "secret" not in error["message"]
    assert frames[1:] == [DONE_FRAME]
    assert outputs.closed
    assert "stream r9 failed" in caplog.text  # the traceback goes to the log instead


async def test_a_client_that_goes_away_closes_the_engine_request() -> None:
    outputs = EngineOutputs()
    stream = finish_stream(
        chunks(b"data: 1\n\n", b"data: 2\n\n"), outputs, usage_frame=None, request_id="r"
    )
    assert await anext(stream) == b"data: 1\n\n"
    await stream.aclose()  # what streaming.EngineStream does when the client has gone
    assert outputs.closed


async def test_a_response_whose_client_is_gone_closes_the_engine_request_at_once() -> None:
    """The send fails while the frames wait at a yield: EngineStream closes them, not the GC."""
    from modelplane.server.streaming import EngineStream

    outputs = EngineOutputs()
    frames = finish_stream(
        chunks(b"data: 1\n\n", b"data: 2\n\n"), outputs, usage_frame=None, request_id="r"
    )

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

    outputs = EngineOutputs()
    frames = finish_stream(
        chunks(b"data: 1\n\n", b"data: 2\n\n"), outputs, usage_frame=None, request_id="r"
    )
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
