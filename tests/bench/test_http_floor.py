"""The HTTP floor's app: modelplane's SSE frames byte for byte, one ASGI message per token,
each token only when a step grants it."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson

from bench.http_floor import (
    ROLE_ENTRY,
    RUNNING,
    SENT,
    SSE_HEADERS,
    STEPS,
    ChatFrames,
    HttpFloorApp,
    content_entry,
)
from modelplane.server.protocol import ChatCompletionRequest
from modelplane.server.streaming import DONE_FRAME, ChunkWriter, stream_response
from modelplane.server.tools import ChoiceStream

RESPONSE_ID, CREATED, MODEL = "chatcmpl-0123456789abcdef0123456789abcdef", 1764400000, "smol"


def modelplane_writer() -> ChunkWriter:
    return ChunkWriter(RESPONSE_ID, "chat.completion.chunk", CREATED, MODEL, include_usage=True)


def modelplane_choice_stream() -> ChoiceStream:
    """The per-choice state modelplane's chat stream takes its entries from."""
    request = ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
         "stream_options": {"include_usage": True}, "max_tokens": 64}
    )  # fmt: skip
    return ChoiceStream(request, 0)


def test_frames_are_the_bytes_modelplane_sends_for_a_plain_chat_stream() -> None:
    ours, writer, choice = (
        ChatFrames(RESPONSE_ID, CREATED, MODEL),
        modelplane_writer(),
        modelplane_choice_stream(),
    )
    assert ours.choice(orjson.dumps(ROLE_ENTRY)) == writer.one_choice(choice.role_entry())
    for text in (" sea", 'é\\n"', "The"):
        [entry] = choice.delta_entries(text, None)
        assert ours.choice(orjson.dumps(content_entry(text))) == writer.one_choice(entry)
    [finish] = choice.finish_entries("length")
    assert ours.finish("length") == writer.one_choice(finish)
    usage = {"prompt_tokens": 31, "completion_tokens": 64, "total_tokens": 95}
    assert ours.usage(31, 64) == writer.usage_chunk(usage)


def test_response_headers_are_modelplanes_stream_headers() -> None:
    async def nothing() -> Any:
        yield b""

    assert sorted(SSE_HEADERS) == sorted(stream_response(nothing()).raw_headers)


class Ticks:
    """The tick process' pipe, written by the test."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    def fileno(self) -> int:
        return self.read_fd

    def step(self, app: HttpFloorApp, steps: int = 1) -> None:
        os.write(self.write_fd, b"s" * steps)
        app.on_ticks()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_stream_sends_one_message_per_granted_token_then_finish_usage_and_done() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[int], list[int]]:
        ticks = Ticks()
        counters = [0, 0, 0]
        app = HttpFloorApp(["The", " sea"], prompt_tokens=7, ticks=ticks, counters=counters)
        body = orjson.dumps({"model": MODEL, "max_tokens": 3, "stream": True})
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST"}
        task = asyncio.ensure_future(app(scope, receive, send))
        await settle()
        assert counters[RUNNING] == 1
        per_step = [len(sent)]  # start and the role chunk, no token before a step
        ticks.step(app)
        await settle()
        per_step.append(len(sent))
        ticks.step(app, steps=2)  # two steps read at once: two tokens, two messages
        await task
        per_step.append(len(sent))
        return sent, per_step, list(counters)

    sent, per_step, counters = asyncio.run(scenario())
    assert per_step == [2, 3, 8]
    assert counters[SENT] == 3 and counters[STEPS] == 3 and counters[RUNNING] == 0
    start, *bodies = sent
    assert start["status"] == 200 and dict(start["headers"])[b"x-request-id"]
    assert [m["more_body"] for m in bodies] == [True] * 6 + [False]
    frames = [m["body"] for m in bodies]
    response_id = orjson.loads(frames[0][len(b"data: ") :])["id"]
    created = orjson.loads(frames[0][len(b"data: ") :])["created"]
    writer = ChunkWriter(response_id, "chat.completion.chunk", created, MODEL, include_usage=True)
    assert frames[1:4] == [
        writer.one_choice(content_entry(text)) for text in ("The", " sea", "The")
    ]
    assert frames[4] == writer.one_choice(
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    )
    assert frames[5] == writer.usage_chunk(
        {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    )
    assert frames[6] == DONE_FRAME
