"""`frontend_write_floor`: what the socket write alone costs per streamed token.

The HTTP floor (`http_floor`) is uvicorn streaming canned SSE. This is less still: an asyncio
protocol that reads each chat request just far enough to find its `max_tokens`, and on every
step writes each running stream's next chunk straight to its transport, from the step's own
callback. No HTTP framework, no ASGI messages, no task per stream to wake: one
`transport.write` of modelplane's exact chunk bytes per token per stream (the frames are
`http_floor.ChatFrames`), paced by the same tick process. A measuring harness, never a
serving mode.

On loopback the writer's CPU also pays the kernel's delivery of each segment to the reader
(and the reader's wake-up); that is part of the figure, as it is of every other figure the
ceiling compares, and is why it is a floor for any front end that writes a token as it comes,
whatever its language.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.http_floor import (
    DONE_FRAME,
    ROLE_ENTRY,
    RUNNING,
    SENT,
    SSE_HEADERS,
    STEPS,
    ChatFrames,
    content_entry,
    take_steps,
)

CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
MAX_TOKENS = re.compile(rb'"max_tokens": *(\d+)')
READY_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def stream_head() -> bytes:
    """The status line and headers of a chunked SSE response, modelplane's stream headers."""
    lines = [b"HTTP/1.1 200 OK", *(name + b": " + value for name, value in SSE_HEADERS)]
    return b"\r\n".join([*lines, b"transfer-encoding: chunked", b"", b""])


def http_chunk(frame: bytes) -> bytes:
    """One chunk of a chunked body, as uvicorn frames each body message."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


@dataclass(eq=False)
class WrittenStream:
    transport: asyncio.WriteTransport
    frames: ChatFrames
    max_tokens: int
    sent: int = 0


class WriteFloorServer:
    """The streams, the request parsing and the per-step writes; `protocol()` per connection."""

    def __init__(self, token_texts: Sequence[str], prompt_tokens: int, counters: Any) -> None:
        self.entries = [orjson.dumps(content_entry(text)) for text in token_texts]
        self.role_entry = orjson.dumps(ROLE_ENTRY)
        self.prompt_tokens = prompt_tokens
        self.counters = counters
        self.running: set[WrittenStream] = set()
        self.head = stream_head()

    def protocol(self) -> asyncio.Protocol:
        return RequestReader(self)

    def request(self, transport: asyncio.WriteTransport, head: bytes, body: bytes) -> None:
        if head.startswith(b"GET /ready "):
            transport.write(READY_RESPONSE)
            return
        found = MAX_TOKENS.search(body)
        frames = ChatFrames(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), "canned")
        stream = WrittenStream(transport, frames, int(found.group(1)) if found else 16)
        transport.write(self.head + http_chunk(frames.choice(self.role_entry)))
        self.running.add(stream)
        self.counters[RUNNING] = len(self.running)

    def step(self, steps: int) -> None:
        """`steps` steps' tokens for every running stream, each written as it is made."""
        sent = 0
        entries, count = self.entries, len(self.entries)
        for stream in list(self.running):
            for _ in range(min(steps, stream.max_tokens - stream.sent)):
                stream.transport.write(
                    http_chunk(stream.frames.choice(entries[stream.sent % count]))
                )
                stream.sent += 1
                sent += 1
            if stream.sent >= stream.max_tokens:
                frames = stream.frames
                stream.transport.write(
                    http_chunk(frames.finish("length"))
                    + http_chunk(frames.usage(self.prompt_tokens, stream.max_tokens))
                    + http_chunk(DONE_FRAME)
                    + LAST_CHUNK
                )
                self.running.discard(stream)
        self.counters[SENT] += sent  # SENT before STEPS, as http_floor.HttpFloorApp.on_ticks
        self.counters[STEPS] += steps
        self.counters[RUNNING] = len(self.running)


class RequestReader(asyncio.Protocol):
    """One keep-alive connection: a request is its head up to the blank line, then
    Content-Length bytes of body."""

    def __init__(self, server: WriteFloorServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            found = CONTENT_LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.server.request(self.transport, head, body)


def serve_write_floor(
    sock: socket.socket,
    args: argparse.Namespace,
    token_texts: Sequence[str],
    prompt_tokens: int,
    ticks: Any,
    counters: Any,
) -> None:
    """The server process (spawned), on uvloop as modelplane is; `args` is unused (the HTTP
    floor's server takes the same arguments)."""
    import uvloop

    server = WriteFloorServer(token_texts, prompt_tokens, counters)

    def on_ticks() -> None:
        if steps := take_steps(ticks):
            server.step(steps)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(server.protocol, sock=sock)
        loop.add_reader(ticks.fileno(), on_ticks)
        await listener.serve_forever()

    uvloop.run(main())
