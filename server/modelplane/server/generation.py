"""What chat and completions share around the engine: first output, final output, usage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from modelplane.server.errors import InternalError
from modelplane.server.request_record import RequestRecord


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def first_output(outputs: AsyncIterator[Any]) -> Any:
    """Wait for the engine's first output so request errors still become a proper HTTP status.

    On any failure (or cancellation) the engine request is aborted by closing `outputs`.
    """
    try:
        first = await anext(outputs)
    except StopAsyncIteration:
        raise InternalError("The engine returned no output.") from None
    except BaseException:
        await outputs.aclose()  # type: ignore[attr-defined]
        raise
    return first


async def run_to_completion(outputs: AsyncIterator[Any]) -> Any:
    """The final RequestOutput of a non-streaming (FINAL_ONLY) request."""
    final = None
    async for output in outputs:
        final = output
    if final is None:
        raise InternalError("The engine returned no output.")
    return final


def mark_first_token_from_metrics(record: RequestRecord, output: Any) -> None:
    """For non-streaming requests: when the engine produced the first token, on our clock."""
    metrics: Any = getattr(output, "metrics", None)
    latency = getattr(metrics, "first_token_latency", 0.0)
    if latency and getattr(metrics, "arrival_time", 0.0):
        first_token_wall = metrics.arrival_time + latency
        record.first_token_at = time.perf_counter() - max(0.0, time.time() - first_token_wall)
    else:
        record.mark_first_token()
