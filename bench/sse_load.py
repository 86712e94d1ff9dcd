"""A deliberately thin streaming-chat load client: raw HTTP/1.1 over asyncio, no JSON parsing.

The front-end ceiling harness needs a client far cheaper per token than the server it
measures (the `openai` SDK parses every chunk into pydantic objects), because both share
this machine's cores. It counts content events by a byte pattern and reads the usage chunk's
`completion_tokens` at the end of each stream.

The synthetic engine paces itself on the tokens the client has received, so the client must
hear of every token as it arrives, including the tokens a front end merges into one event
(vLLM's output collector merges whatever a stream has not yet taken). Given the generated
text's token boundaries (`token_ends`), it credits tokens by the content bytes received; else
`tokens_per_event` per content event, corrected to the usage count when the stream ends.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

CONTENT_EVENT = b'"delta":{"content":'
# A content delta's JSON string, as sent (escapes included).
CONTENT_TEXT = re.compile(rb'"delta":\{"content":"((?:[^"\\]|\\.)*)"')
DONE_EVENT = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"
COMPLETION_TOKENS = re.compile(rb'"completion_tokens":(\d+)')
# A stream that stalls this long counts as an error (and its connection is replaced), so a
# stuck server or harness shows up as errors in a bounded run rather than as a hang.
STREAM_TIMEOUT_S = 120.0


@dataclass
class LoadCounters:
    content_events: int = 0
    completion_tokens: int = 0
    requests: int = 0
    errors: int = 0


def chat_request(host: str, port: int, model: str, prompt: str, max_tokens: int) -> bytes:
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def stream_once(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    counters: LoadCounters,
    on_tokens: Callable[[int], None],
    tokens_per_event: int = 1,
    token_ends: Sequence[int] | None = None,
) -> None:
    """One streamed chat completion on a kept-alive connection, read to its last chunk.

    Tokens are credited as they arrive: with `token_ends` (the end, in content bytes as sent,
    of each generated token: `generated_token_ends`) every token whose text has fully
    arrived, however the server grouped them into events; without, `tokens_per_event` per
    content event (the server's --stream-interval). Either is corrected to the usage chunk's
    count at the end."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    tail = b""
    events = 0
    content = 0  # bytes of content text received, for token_ends
    credited = 0
    usage: int | None = None
    done = False
    while True:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the server closed the stream")
        window = tail + data
        new = window.count(CONTENT_EVENT) - tail.count(CONTENT_EVENT)
        if new:
            events += new
            if token_ends is None:
                credit = new * tokens_per_event
            else:
                content += content_bytes(window) - content_bytes(tail)
                credit = bisect.bisect_right(token_ends, content) - credited
            if credit:
                credited += credit
                on_tokens(credit)
        if not done and DONE_EVENT in window:
            done = True
            found = COMPLETION_TOKENS.findall(window)
            usage = int(found[-1]) if found else None
        if done and window.endswith(LAST_CHUNK):
            break
        tail = window[-2048:]
    counters.content_events += events
    counters.requests += 1
    if usage is not None:
        counters.completion_tokens += usage
        if usage != credited:  # whatever the crediting missed still reaches the pacing counter
            on_tokens(usage - credited)


def content_bytes(window: bytes) -> int:
    """Bytes of content text in the content events complete in `window`."""
    return sum(len(text) for text in CONTENT_TEXT.findall(window))


def generated_token_ends(token_texts: Sequence[str]) -> list[int]:
    """Where each token's text ends in a stream's content, in bytes as JSON sends them.

    `token_texts`: the text of the first k tokens for k = 1, 2, ... (the detokenized prefixes,
    which is what a front end has streamed after k tokens)."""
    return [len(orjson.dumps(text)) - 2 for text in token_texts]


async def run_streams(
    host: str,
    port: int,
    model: str,
    streams: int,
    max_tokens: int,
    stop_at: float,
    counters: LoadCounters,
    on_tokens: Callable[[int], None],
    prompts: tuple[str, ...] = ("Write a short poem about the sea.",),
    tokens_per_event: int = 1,
    token_ends: Sequence[int] | None = None,
) -> None:
    """`streams` connections, each sending one request after another until `stop_at`."""

    async def stream_loop(index: int) -> None:
        request = chat_request(host, port, model, prompts[index % len(prompts)], max_tokens)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                try:
                    await asyncio.wait_for(
                        stream_once(
                            reader,
                            writer,
                            request,
                            counters,
                            on_tokens,
                            tokens_per_event,
                            token_ends,
                        ),
                        STREAM_TIMEOUT_S,
                    )
                except (
                    RuntimeError,
                    ConnectionError,
                    asyncio.TimeoutError,
                    asyncio.IncompleteReadError,
                ):
                    counters.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(stream_loop(i) for i in range(streams)))
