"""The ceiling harness' thin load client against a canned chunked SSE stream."""

from __future__ import annotations

import asyncio

from bench.sse_load import LoadCounters, chat_request, generated_token_ends, stream_once


def chunked(frames: list[bytes]) -> bytes:
    """An HTTP/1.1 chunked body, one chunk per SSE frame, as uvicorn sends a stream."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames)
    return body + b"0\r\n\r\n"


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


STREAM = [
    frame(b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'),
    frame(b'{"choices":[{"index":0,"delta":{"content":"Hel"}}]}'),
    frame(b'{"choices":[{"index":0,"delta":{"content":"lo"}}]}'),
    frame(b'{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}'),
    frame(b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}'),
    b"data: [DONE]\n\n",
]


async def serve_twice_and_count(
    split: int, tokens_per_event: int = 1, token_ends: list[int] | None = None
) -> tuple[LoadCounters, list[int]]:
    """Two requests on one kept-alive connection; the server writes `split`-byte pieces."""
    response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(STREAM)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            length = 0
            while length == 0:
                length = len(await reader.read(65536))  # the JSON body
            for start in range(0, len(response), split):
                writer.write(response[start : start + split])
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    counters = LoadCounters()
    reported: list[int] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = chat_request("127.0.0.1", port, "m", "hi", 3)
    for _ in range(2):
        await stream_once(
            reader, writer, request, counters, reported.append, tokens_per_event, token_ends
        )
    writer.close()
    server.close()
    return counters, reported


def test_counts_content_events_and_usage_however_the_bytes_are_split() -> None:
    for split in (7, 64, 100_000):
        counters, reported = asyncio.run(serve_twice_and_count(split))
        assert counters.requests == 2
        assert counters.content_events == 4  # the role chunk's empty content is not a token
        assert counters.completion_tokens == 6
        # The pacing counter hears of every token: 2 events + 1 merged token per request.
        assert sum(reported) == 6


def test_with_a_stream_interval_events_are_credited_that_many_tokens_then_corrected() -> None:
    """--stream-interval 4: the pacing counter hears 4 tokens per event as it arrives (the
    synthetic engine must not wait for tokens the front end holds back), the usage's count
    in the end."""
    counters, reported = asyncio.run(serve_twice_and_count(64, tokens_per_event=4))
    assert reported[0] in (4, 8)  # one event or both in the first read
    assert sum(reported) == counters.completion_tokens == 6


async def credits_before_the_rest_is_sent(token_ends: list[int]) -> list[int]:
    """The server sends the role and first content chunk, then sends the rest only once the
    client has credited tokens for what it got: a client that credits late times out."""
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    body = chunked(STREAM)
    first = head + body[: body.index(b'"lo"')]
    first = first[: first.rindex(b"\r\n") + 2]  # up to the end of the "Hel" chunk
    reported: list[int] = []
    credited = asyncio.Event()

    def on_tokens(count: int) -> None:
        reported.append(count)
        credited.set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(65536)
        writer.write(first)
        await asyncio.wait_for(credited.wait(), 5)
        writer.write((head + body)[len(first) :])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = chat_request("127.0.0.1", port, "m", "hi", 3)
    await asyncio.wait_for(
        stream_once(reader, writer, request, LoadCounters(), on_tokens, 1, token_ends), 10
    )
    writer.close()
    server.close()
    return reported


def test_with_token_ends_merged_tokens_are_credited_as_their_text_arrives() -> None:
    """The front end merged 2 of the 3 tokens ("He", "l", "lo") into its first event: the
    pacing counter hears of both as that event arrives, not when the stream ends."""
    token_ends = generated_token_ends(["He", "Hel", "Hello"])
    assert token_ends == [2, 3, 5]
    assert asyncio.run(credits_before_the_rest_is_sent(token_ends)) == [2, 1]
    for split in (7, 64, 100_000):  # however the bytes are split, the total is the usage
        counters, reported = asyncio.run(serve_twice_and_count(split, token_ends=token_ends))
        assert sum(reported) == counters.completion_tokens == 6


def test_token_ends_count_bytes_as_json_sends_them() -> None:
    assert generated_token_ends(['a"', 'a"b', 'a"b\n']) == [3, 4, 6]


def test_chat_request_is_a_streamed_chat_completion_with_usage() -> None:
    request = chat_request("127.0.0.1", 8000, "smol", "hi", 16)
    head, body = request.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1")
    assert f"Content-Length: {len(body)}".encode() in head
    assert b'"stream":true' in body and b'"include_usage":true' in body
    assert b'"max_tokens":16' in body and b'"ignore_eos":true' in body
