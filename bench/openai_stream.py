"""One streamed chat completion through the official `openai` async client, timed per chunk.

The same code drives vLLM's server and modelplane's, so any difference is the server's.
"""

from __future__ import annotations

import time
from typing import Any, cast

import openai

from bench.stats import RequestTiming, describe_error
from bench.workload import Messages, check_output_length


def make_client(base_url: str, timeout_s: float = 600.0) -> openai.AsyncOpenAI:
    # No retries: a retried request would hide an error and distort its latency.
    return openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=timeout_s)


async def stream_chat(
    client: openai.AsyncOpenAI, model: str, messages: Messages, max_tokens: int
) -> RequestTiming:
    """Stream one chat completion; record when each token-carrying chunk arrived."""
    timing = RequestTiming(started_at=time.perf_counter())
    chunks_with_text = 0
    usage_tokens: int | None = None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=cast(Any, messages),
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
            # vLLM's extra sampling field: generate exactly max_tokens tokens.
            extra_body={"ignore_eos": True},
        )
        async for chunk in stream:
            now = time.perf_counter()
            if chunk.choices and chunk.choices[0].delta.content:
                timing.token_chunk_times.append(now)
                chunks_with_text += 1
            if chunk.usage is not None:
                usage_tokens = chunk.usage.completion_tokens
        timing.finished_at = time.perf_counter()
        timing.output_tokens = usage_tokens if usage_tokens is not None else chunks_with_text
    except Exception as exc:  # any failure is one error of the level, never a crash
        timing.error = describe_error(exc)
    return check_output_length(timing, max_tokens)
