"""OpenAI streams as server-sent events: chunk framing, the chunk loop, the epilogue, the response.

A stream is `data: {chunk}\\n\\n` frames, then (when asked) a usage chunk, and always
`data: [DONE]\\n\\n`, even after an error frame. `ChunkWriter` frames the chunks,
`stream_choices` says which chunks each engine output makes (chat and completions differ only
in their `ChoiceEntries`), `finish_stream` is the stream (those chunks output by output, then
what every stream ends with), `stream_response` sends it. This is the per-token path: work
here is paid for every streamed token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Send

from modelplane.server.errors import InternalError, OpenAIError
from modelplane.server.generation import usage
from modelplane.server.middleware import BODY_SEND
from modelplane.server.request_record import RequestRecord

logger = logging.getLogger(__name__)

DONE_FRAME = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: OpenAIError) -> bytes:
    """Sent in place of further chunks when the engine fails mid-stream; [DONE] follows."""
    return sse_frame(error.body())


class ChunkWriter:
    """Frames stream chunks; the constant head of every chunk is serialized once per request."""

    def __init__(
        self, response_id: str, object_type: str, created: int, model: str, include_usage: bool
    ) -> None:
        head = orjson.dumps(
            {"id": response_id, "object": object_type, "created": created, "model": model}
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":'
        self._suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._one_prefix = self._prefix + b"["
        self._one_suffix = b"]" + self._suffix
        self._usage_prefix = b"data: " + head[:-1] + b',"choices":[],"usage":'
        self.include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return self._prefix + orjson.dumps(choices) + self._suffix

    def one_choice(self, entry: dict[str, Any]) -> bytes:
        """`chunk([entry])`: the frame OpenAI sends per choice delta, without the list."""
        return self._one_prefix + orjson.dumps(entry) + self._one_suffix

    def usage_chunk(self, usage_body: dict[str, int]) -> bytes:
        return self._usage_prefix + orjson.dumps(usage_body) + b"}\n\n"

    def usage_frame(self, record: RequestRecord) -> Callable[[], bytes] | None:
        """Makes the usage chunk when the stream ends (counts final); None unless asked for."""
        if not self.include_usage:
            return None
        return lambda: self.usage_chunk(usage(record.prompt_tokens, record.completion_tokens))


# One engine completion (its prompt's index, vLLM's CompletionOutput) -> its chunks' `choices`
# entries, in order. Called once per completion per engine output: for every token.
ChoiceEntries = Callable[[int, Any], list[dict[str, Any]]]
# One engine output -> its frames, in order. Called for every engine output: for every token.
OutputFrames = Callable[[Any], list[bytes]]


def stream_choices(
    outputs: AsyncIterator[Any],
    first: Any,
    entries: ChoiceEntries,
    writer: ChunkWriter,
    record: RequestRecord,
    *,
    opening: Sequence[dict[str, Any]] = (),
    merged: bool = False,
) -> AsyncIterator[bytes]:
    """A whole stream's frames: one chunk per choice entry, as OpenAI sends them, then the
    epilogue (`finish_stream`).

    `opening` entries (chat's role deltas) come first, then every engine output's. With
    `merged` the outputs are `(prompt_index, RequestOutput)` pairs (completions' prompt lists).
    """
    one_choice = writer.one_choice

    def frames_of(item: Any) -> list[bytes]:
        prompt_index, output = item if merged else (0, item)
        frames = []
        for completion in output.outputs:
            record.completion_tokens += len(completion.token_ids)
            for entry in entries(prompt_index, completion):
                frames.append(one_choice(entry))
        return frames

    record.mark_first_token()
    return finish_stream(
        outputs,
        first,
        frames_of,
        opening=[one_choice(entry) for entry in opening],
        usage_frame=writer.usage_frame(record),
        request_id=record.request_id,
    )


async def finish_stream(
    outputs: AsyncIterator[Any],
    first: Any,
    frames_of: OutputFrames,
    *,
    opening: Sequence[bytes] = (),
    usage_frame: Callable[[], bytes] | None,
    request_id: str,
) -> AsyncIterator[bytes]:
    """What every stream sends: `opening`, the frames of `first` and of every output after
    it, usage, an error frame if it fails, `[DONE]`; the engine request ends with it.

    One generator from the engine's outputs to the response, so a token passes through no
    other. `usage_frame` (when the client asked for usage) is called once the outputs are
    all sent. A failure mid-stream becomes an error frame (the status line is long gone);
    whatever ends the stream — the last output, a failure, a client that went away — closes
    `outputs`, which aborts the engine request if it is still running.
    """
    try:
        for frame in opening:
            yield frame
        item = first
        while item is not None:
            for frame in frames_of(item):
                yield frame
            item = await anext(outputs, None)
        if usage_frame is not None:
            yield usage_frame()
    except OpenAIError as error:
        yield error_frame(error)
    except Exception:
        logger.exception("stream %s failed", request_id)
        yield error_frame(InternalError("The stream failed."))
    finally:
        await outputs.aclose()  # type: ignore[attr-defined]
    yield DONE_FRAME


class EngineStream(StreamingResponse):
    """An SSE response that sends its frames on the short path and closes its frame iterator
    however the response ends.

    Starlette cancels a stream when the client goes away but leaves the iterator to the
    garbage collector; when it was suspended at a blocked send, only closing it runs
    `finish_stream`'s cleanup, which aborts the engine request.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.send_frame: Send = scope.get(BODY_SEND, send)
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def stream_response(self, send: Send) -> None:
        """Starlette's, cut to what a token costs.

        The start and the last message go through every layer, which add the request id and
        count the response complete. The frames between skip the layers (Starlette's error
        and exception handling, RequestMiddleware's wrapper: all pass body messages on
        untouched) and go straight to the server's `send` (`BODY_SEND`). `[DONE]` is the
        body's last message, with no empty one after it.
        """
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        send_frame = self.send_frame
        async for frame in self.body_iterator:
            if frame is DONE_FRAME:
                await send({"type": "http.response.body", "body": frame, "more_body": False})
                return
            await send_frame({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def stream_response(frames: AsyncIterator[bytes]) -> EngineStream:
    return EngineStream(frames, media_type="text/event-stream", headers=SSE_HEADERS)
