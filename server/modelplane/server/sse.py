"""Server-sent-event framing of OpenAI streams: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`."""

from __future__ import annotations

from typing import Any

import orjson

from modelplane.server.errors import OpenAIError

DONE_FRAME = b"data: [DONE]\n\n"


def sse_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: OpenAIError) -> bytes:
    """Sent in place of further chunks when the engine fails mid-stream; [DONE] follows."""
    return sse_frame(error.body())
