"""Request bodies are bounded before anything parses them (`--max-request-body-size`).

A declared `Content-Length` over the cap is refused before a byte of the body is read; a
chunked upload is counted as it arrives and refused as soon as it passes the cap. Either
way the client gets 413 in OpenAI's error shape, and the JSON parser and tokenizer never
see the body. uvicorn discards the rest of a refused body, so the client can read the 413.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelplane.server.errors import RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# 4 MiB: a 128k-token prompt is ~0.5 MB of text, ~3 MB in the worst JSON escaping (\uXXXX);
# OpenAI's embedding batch limit (300k tokens) is ~2 MB as token-id arrays. Larger contexts
# raise it with the flag.
DEFAULT_MAX_REQUEST_BODY_BYTES = 4 * 2**20

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_byte_size(text: str) -> int:
    """`4194304`, `4MiB`, `4Mi`, `512KB`, `1G`... -> bytes (binary units with `i`)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: expected bytes or a unit like 4MiB or 512KB")
    number, unit = int(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    if unit.endswith("i"):
        return number * 2 ** (10 * "kmg".index(unit[0]) + 10)
    return number * _UNITS[unit]


def human_size(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestBodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes` (0: no cap), declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"The request body is larger than this server accepts "
            f"({human_size(self.max_bytes)}). Send a shorter request."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        if declared is not None and declared > self.max_bytes:
            raise self.too_large()
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, bounded_receive, send)
