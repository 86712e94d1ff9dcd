"""Server-sent-event framing of OpenAI streams: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from modelplane.server.errors import InternalError, OpenAIError

logger = logging.getLogger(__name__)

DONE_FRAME = b"data: [DONE]\n\n"


def sse_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: OpenAIError) -> bytes:
    """Sent in place of further chunks when the engine fails mid-stream; [DONE] follows."""
    return sse_frame(error.body())


async def finish_stream(
    frames: AsyncIterator[bytes],
    outputs: AsyncIterator[Any],
    *,
    usage_frame: Callable[[], bytes] | None,
    request_id: str,
) -> AsyncIterator[bytes]:
    """What every stream does around its chunks: usage, errors, engine abort, `[DONE]`.

    `frames` yields the chunks; `usage_frame` (when the client asked for usage) is called once
    they are all sent. A failure mid-stream becomes an error frame (the status line is long
    gone); whatever ends the stream — the last chunk, a failure, a client that went away —
    closes `outputs`, which aborts the engine request if it is still running.
    """
    try:
        async with contextlib.aclosing(frames):  # type: ignore[type-var]
            async for frame in frames:
                yield frame
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
