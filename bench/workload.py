"""The workload every system gets: fixed chat prompts, fixed output length, N requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.stats import RequestTiming

# Short, varied user turns; the chat template wraps them the same way for every system.
PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three uses of copper.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "Summarize the plot of Romeo and Juliet.",
    "What are the benefits of regular exercise?",
)

Messages = list[dict[str, str]]
# Sends one request and returns its timing; must not raise (failures go into `error`).
SendRequest = Callable[[Messages], Awaitable[RequestTiming]]


def messages_for(index: int) -> Messages:
    """The chat messages of the index-th request: the prompts in a fixed rotation."""
    return [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]


@dataclass
class LevelRun:
    concurrency: int
    wall_s: float
    timings: list[RequestTiming]


async def run_level(send: SendRequest, concurrency: int, total_requests: int) -> LevelRun:
    """Keep `concurrency` requests in flight until `total_requests` are done (closed loop)."""
    next_index = 0
    timings: list[RequestTiming] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < total_requests:
            index = next_index
            next_index += 1
            timings.append(await send(messages_for(index)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, total_requests))))
    return LevelRun(concurrency, time.perf_counter() - started, timings)


def requests_for_level(concurrency: int, requests_per_level: int | None) -> int:
    """Per round, the default is one full wave (at least 4 requests): rounds, not long
    levels, make the medians stable."""
    if requests_per_level is not None:
        return requests_per_level
    return max(4, concurrency)


def check_output_length(timing: RequestTiming, max_tokens: int) -> RequestTiming:
    """A request that produced fewer tokens than asked did not honour ignore_eos: an error."""
    if timing.error is None and timing.output_tokens != max_tokens:
        timing.error = f"expected {max_tokens} output tokens, got {timing.output_tokens}"
    return timing
