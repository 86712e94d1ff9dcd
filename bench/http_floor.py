"""`frontend_http_floor`: what the HTTP transport alone costs per streamed token.

A minimal ASGI app under modelplane's own uvicorn configuration (`lifecycle.uvicorn_config`:
the same options, so the same httptools parser and uvloop loop) streams canned chat-completion
chunks, byte for byte the shape modelplane sends (a role chunk, one content chunk per token,
a finish chunk, the usage chunk, `[DONE]`), to the ceiling's load client (`sse_load`). No
engine, tokenizer, detokenizer or per-token JSON: what is left is uvicorn's request parsing,
the ASGI messages, one chunked write per event, and waking each stream for each token.

Tokens are paced as the synthetic engine paces them, with its `Pacer` and the client's shared
`received` counter: a tick process (standing where the engine core stands, its CPU not
counted) lets the server take one step, one token for every running stream, while the tokens
sent but not received stay under two steps' worth; so every token is its own event and its
own write. A measuring harness, never a serving mode.

AsyncLLM's floor (no HTTP) plus this floor (HTTP and nothing else) is the lower bound for an
HTTP front end in Python on this stack; modelplane's CPU per token above that sum is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.frontend_ceiling import (
    PROMPT,
    CeilingOptions,
    CeilingPoint,
    Measure,
    generated_token_ids,
    log,
    measure_window,
    server_args,
    wait_ready,
)
from bench.servers import free_port
from bench.synthetic_engine import LAG_STEPS, Pacer

CHAT_PATH = "/v1/chat/completions"
DONE_FRAME = b"data: [DONE]\n\n"
# What modelplane's stream response carries (Starlette adds the charset to text/* types; the
# request middleware adds x-request-id); uvicorn adds date, server and transfer-encoding.
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Indices into the counters the server shares with the tick process.
SENT, STEPS, RUNNING = 0, 1, 2


def content_entry(text: str) -> dict[str, Any]:
    return {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}


ROLE_ENTRY = {
    "index": 0,
    "delta": {"role": "assistant", "content": "", "refusal": None},
    "logprobs": None,
    "finish_reason": None,
}


class ChatFrames:
    """One chat stream's SSE frames, as modelplane frames them with usage asked for."""

    def __init__(self, response_id: str, created: int, model: str) -> None:
        head = orjson.dumps(
            {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        self.prefix = b"data: " + head[:-1] + b',"choices":['
        self.suffix = b'],"usage":null}\n\n'
        self.usage_prefix = b"data: " + head[:-1] + b',"choices":[],"usage":'

    def choice(self, entry_json: bytes) -> bytes:
        """The frame of one choice entry given as JSON (canned once per token text)."""
        return self.prefix + entry_json + self.suffix

    def finish(self, reason: str) -> bytes:
        entry = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        return self.choice(orjson.dumps(entry))

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        body = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return self.usage_prefix + orjson.dumps(body) + b"}\n\n"


@dataclass(eq=False)
class PacedStream:
    """A running stream: the tokens the steps granted it so far, and its wake-up."""

    max_tokens: int
    granted: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class HttpFloorApp:
    """The ASGI app: `/ready`, and streamed chat completions of canned tokens, paced by ticks."""

    def __init__(
        self, token_texts: Sequence[str], prompt_tokens: int, ticks: Any, counters: Any
    ) -> None:
        self.entries = [orjson.dumps(content_entry(text)) for text in token_texts]
        self.role_entry = orjson.dumps(ROLE_ENTRY)
        self.prompt_tokens = prompt_tokens
        self.ticks = ticks  # the read end of the tick process' pipe (a Connection)
        self.counters = counters
        self.running: set[PacedStream] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] != "http":
            return
        elif scope["path"] == "/ready":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == CHAT_PATH and scope["method"] == "POST":
            await self.stream(receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                asyncio.get_running_loop().add_reader(self.ticks.fileno(), self.on_ticks)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                asyncio.get_running_loop().remove_reader(self.ticks.fileno())
                await send({"type": "lifespan.shutdown.complete"})
                return

    def on_ticks(self) -> None:
        """Each tick byte is one step: the next token for every running stream."""
        steps = take_steps(self.ticks)
        if not steps:
            return
        sent = 0
        for stream in list(self.running):
            grant = min(steps, stream.max_tokens - stream.granted)
            stream.granted += grant
            sent += grant
            stream.wake.set()
            if stream.granted >= stream.max_tokens:
                self.running.discard(stream)
        # SENT before STEPS: the tick process reads them in the other order, so a step seen
        # taken is also seen sent.
        self.counters[SENT] += sent
        self.counters[STEPS] += steps
        self.counters[RUNNING] = len(self.running)

    async def stream(self, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = orjson.loads(body)
        request_id = uuid.uuid4().hex
        frames = ChatFrames(f"chatcmpl-{request_id}", int(time.time()), request["model"])
        stream = PacedStream(int(request["max_tokens"]))
        self.running.add(stream)
        self.counters[RUNNING] = len(self.running)
        headers = [*SSE_HEADERS, (b"x-request-id", request_id.encode())]
        entries, count = self.entries, len(self.entries)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(body_message(frames.choice(self.role_entry)))
            for position in range(stream.max_tokens):
                while stream.granted <= position:
                    stream.wake.clear()
                    await stream.wake.wait()
                await send(body_message(frames.choice(entries[position % count])))
            await send(body_message(frames.finish("length")))
            await send(body_message(frames.usage(self.prompt_tokens, stream.max_tokens)))
            await send({"type": "http.response.body", "body": DONE_FRAME, "more_body": False})
        finally:
            self.running.discard(stream)
            self.counters[RUNNING] = len(self.running)


def take_steps(ticks: Any) -> int:
    """The steps the tick process has told since the last call, one byte each (for the
    event loop's reader of `ticks`); 0, and the reader removed, when it is gone."""
    steps = len(os.read(ticks.fileno(), 4096))
    if not steps:
        asyncio.get_running_loop().remove_reader(ticks.fileno())
    return steps


def body_message(frame: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": frame, "more_body": True}


def serve_http_floor(
    sock: socket.socket,
    args: argparse.Namespace,
    token_texts: Sequence[str],
    prompt_tokens: int,
    ticks: Any,
    counters: Any,
) -> None:
    """The server process (spawned): the app under modelplane's uvicorn configuration."""
    import uvicorn

    from modelplane.server.cli import build_settings
    from modelplane.server.lifecycle import uvicorn_config

    app = HttpFloorApp(token_texts, prompt_tokens, ticks, counters)
    uvicorn.Server(uvicorn_config(build_settings(args), app)).run(sockets=[sock])


def run_tick_source(
    ticks: Any, counters: Any, received: Any, lag_steps: int = LAG_STEPS, stall_s: float = 0.05
) -> None:
    """The tick process (spawned): the synthetic engine's pacing, one byte per step."""
    parent = os.getppid()
    pacer = Pacer(lag_steps, stall_s)
    told = 0  # steps told to the server; those it has not taken yet are sent all the same
    while os.getppid() == parent:
        untaken = told - counters[STEPS]
        running = counters[RUNNING]
        sent = counters[SENT] + untaken * running
        if pacer.may_step(sent, received.value, running):
            os.write(ticks.fileno(), b"s")
            told += 1
        else:
            # Idle between windows (the ceiling keeps every system running), it wakes seldom.
            time.sleep(0.0005 if running else 0.02)


def canned_tokens(model: str) -> tuple[list[str], int]:
    """The synthetic engine's token texts, one per token, and the chat prompt's length."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    token_ids = generated_token_ids(tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    prompt_tokens = len(tokenizer.encode(prompt, add_special_tokens=False))
    return tokenizer.batch_decode([[token] for token in token_ids]), prompt_tokens


@contextlib.contextmanager
def transport_floor(
    model: str,
    served_name: str,
    options: CeilingOptions,
    serve: Callable[..., None] = serve_http_floor,
    label: str = "HTTP floor (uvicorn, canned SSE)",
) -> Iterator[Measure]:
    """A canned-SSE server and its tick process, running until the block ends; yields their
    `Measure`. `serve` is the server process' target: `serve_http_floor`, or the write
    floor's server (`write_floor.serve_write_floor`), which takes the same arguments."""
    from modelplane.server.api_servers import listening_socket

    token_texts, prompt_tokens = canned_tokens(model)
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    received = spawn.RawValue("q", 0)
    counters = spawn.RawArray("q", 3)
    tick_reader, tick_writer = spawn.Pipe(duplex=False)
    sock = listening_socket("127.0.0.1", port)
    server = spawn.Process(
        target=serve,
        args=(sock, server_args(model, served_name, port, 1), token_texts, prompt_tokens,
              tick_reader, counters),
        name="HttpFloor",
        daemon=True,
    )  # fmt: skip
    ticker = spawn.Process(
        target=run_tick_source,
        args=(tick_writer, counters, received),
        name="HttpFloorTicks",
        daemon=True,
    )
    try:
        server.start()
        ticker.start()
        tick_reader.close()
        tick_writer.close()
        wait_ready(port, timeout_s=60)
        pid = server.pid
        assert pid is not None

        def measure(level: int) -> CeilingPoint:
            rate, cpu_us, per_event, errors = asyncio.run(
                measure_window("127.0.0.1", port, served_name, level, options.max_tokens,
                               options.warmup_s, options.measure_s, [pid], received)
            )  # fmt: skip
            log(f"{label}, {level} streams: {rate:.0f} tok/s, "
                f"{cpu_us:.1f} us CPU/token, {per_event:.2f} tokens/event, {errors} errors")  # fmt: skip
            return CeilingPoint(1, level, rate, cpu_us, per_event, errors)

        yield measure
    finally:
        for process in (ticker, server):
            with contextlib.suppress(Exception):
                process.terminate()
                process.join(10)
        sock.close()
