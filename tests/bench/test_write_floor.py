"""The write floor's server: over a real loopback socket, a chat stream is the bytes uvicorn
sends for modelplane's frames, one token per stream per step, keep-alive between requests."""

from __future__ import annotations

import asyncio
import socket

import orjson

from bench.http_floor import RUNNING, SENT, STEPS, content_entry
from bench.write_floor import READY_RESPONSE, WriteFloorServer, http_chunk, stream_head
from modelplane.server.streaming import DONE_FRAME, ChunkWriter


def chat_request(max_tokens: int) -> bytes:
    body = orjson.dumps({"model": "m", "max_tokens": max_tokens, "stream": True})
    head = f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def read_available(reader: asyncio.StreamReader) -> bytes:
    """Whatever the server has written by now (it writes from its callbacks, synchronously)."""
    data = b""
    while True:
        try:
            data += await asyncio.wait_for(reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            return data


def test_a_stream_is_uvicorns_chunks_of_modelplanes_frames_one_token_per_step() -> None:
    async def scenario() -> tuple[list[bytes], list[int]]:
        counters = [0, 0, 0]
        server = WriteFloorServer(["The", " sea"], prompt_tokens=7, counters=counters)
        listener = await asyncio.get_running_loop().create_server(
            server.protocol, "127.0.0.1", 0, family=socket.AF_INET
        )
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            reads = [await read_available(reader)]
            writer.write(chat_request(3))
            reads.append(await read_available(reader))  # head and role chunk, no token yet
            for steps in (1, 2):  # two steps at once: the two tokens left, then the end
                server.step(steps)
                reads.append(await read_available(reader))
            writer.write(chat_request(1))  # the same connection, kept alive
            second = await read_available(reader)
            server.step(1)
            reads.append(second + await read_available(reader))
        finally:
            writer.close()
            listener.close()
        return reads, counters

    reads, counters = asyncio.run(scenario())
    ready, opening, first, rest, second_stream = reads
    assert ready == READY_RESPONSE
    assert opening.startswith(stream_head())
    assert b"content-type: text/event-stream; charset=utf-8\r\n" in opening
    role_frame = opening[len(stream_head()) :]
    head = orjson.loads(role_frame.split(b"\r\n")[1][len(b"data: ") :])
    writer = ChunkWriter(head["id"], "chat.completion.chunk", head["created"], "canned", True)
    assert role_frame == http_chunk(
        writer.one_choice(
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        )
    )
    assert first == http_chunk(writer.one_choice(content_entry("The")))
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert rest == b"".join(
        [
            http_chunk(writer.one_choice(content_entry(" sea"))),
            http_chunk(writer.one_choice(content_entry("The"))),
            http_chunk(writer.one_choice(finish)),
            http_chunk(writer.usage_chunk(usage)),
            http_chunk(DONE_FRAME),
            b"0\r\n\r\n",
        ]
    )
    assert second_stream.startswith(stream_head())
    assert second_stream.endswith(http_chunk(DONE_FRAME) + b"0\r\n\r\n")
    assert counters[SENT] == 4 and counters[STEPS] == 4 and counters[RUNNING] == 0
