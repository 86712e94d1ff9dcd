"""Run the serving systems side by side, interleaved over rounds, with the same model, flags
and workload."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.config import SYSTEM_LABELS, BenchConfig
from bench.cpu_clock import process_cpu_seconds
from bench.openai_stream import make_client, stream_chat
from bench.raw_engine import raw_engine
from bench.servers import (
    free_port,
    modelplane_server_command,
    running_server,
    vllm_server_command,
)
from bench.stats import RoundResults, summarize_level
from bench.workload import SendRequest, requests_for_level, run_level

# GiB of RAM each CPU engine may use for its KV cache when the caller did not say (three
# engines are up at once; 1 GiB holds ~20k tokens of the bundled model, far above the load).
DEFAULT_KVCACHE_GIB = "1"


def resolve_model(config: BenchConfig) -> tuple[str, str]:
    """(model path or id, served name): the bundled SmolLM2 unless --model was given."""
    if config.model is not None:
        return config.model, config.served_model_name or config.model
    from modelplane.server.default_model import DEFAULT_SERVED_MODEL_NAME, ensure_default_model

    return str(ensure_default_model()), config.served_model_name or DEFAULT_SERVED_MODEL_NAME


@dataclass(frozen=True)
class OpenSystem:
    """A started system: how to send one request, and which process does the serving work."""

    send: SendRequest
    # The HTTP server's process, or this one for the raw engine; either way the engine core
    # runs in a child process, which is not counted.
    serving_pid: int

    def serving_cpu_seconds(self) -> float:
        return process_cpu_seconds(self.serving_pid)


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KVCACHE_GIB)
    return env


@contextlib.asynccontextmanager
async def _server_system(
    command_for: Callable[[str, str, Sequence[str], int], list[str]],
    model: str,
    served_name: str,
    config: BenchConfig,
) -> AsyncIterator[OpenSystem]:
    port = free_port()
    command = command_for(model, served_name, config.engine_args, port)
    with running_server(command, port, engine_env()) as (base_url, pid):
        client = make_client(base_url)

        async def send(messages: Any) -> Any:
            return await stream_chat(client, served_name, messages, config.max_tokens)

        try:
            yield OpenSystem(send, pid)
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def _raw_system(
    model: str, served_name: str, config: BenchConfig
) -> AsyncIterator[OpenSystem]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KVCACHE_GIB)
    async with raw_engine(model, served_name, config.engine_args, config.max_tokens) as send:
        yield OpenSystem(send, os.getpid())


def open_system(
    system: str, model: str, served_name: str, config: BenchConfig
) -> contextlib.AbstractAsyncContextManager[OpenSystem]:
    if system == "raw":
        return _raw_system(model, served_name, config)
    if system == "vllm":
        return _server_system(vllm_server_command, model, served_name, config)
    if system == "modelplane":
        return _server_system(modelplane_server_command, model, served_name, config)
    raise ValueError(f"unknown serving system {system!r}")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure_level(
    opened: OpenSystem, concurrency: int, total: int
) -> tuple[dict[str, float | int], list[str]]:
    """One round of one level on one system: its summary and its errors."""
    cpu_before = opened.serving_cpu_seconds()
    level = await run_level(opened.send, concurrency, total)
    serving_cpu_s = opened.serving_cpu_seconds() - cpu_before
    errors = [t.error for t in level.timings if t.error]
    return summarize_level(level.timings, level.wall_s, serving_cpu_s), errors


def round_order(systems: Sequence[str], round_index: int) -> list[str]:
    """The systems rotated by the round: each takes every position in turn."""
    shift = round_index % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


async def warm_up(label: str, opened: OpenSystem, config: BenchConfig) -> None:
    if config.warmup_requests <= 0:
        return
    concurrency = min(config.warmup_requests, max(config.concurrency))
    warm = await run_level(opened.send, concurrency, config.warmup_requests)
    failed = [t.error for t in warm.timings if t.error]
    if failed:
        log(f"{label}: {len(failed)} warm-up request(s) failed, e.g. {failed[0]}")


async def run_interleaved(
    systems: Sequence[str], model: str, served_name: str, config: BenchConfig
) -> RoundResults:
    """Start every system, then per round and level run each in turn (rotated each round).

    The systems stay up together; only one is loaded at a time (an idle vLLM engine waits
    on its input queue), so each round compares them minutes apart at most, under the same
    background load, and per-round ratios cancel the machine's drift.
    """
    results: RoundResults = {s: {str(c): [] for c in config.concurrency} for s in systems}
    async with contextlib.AsyncExitStack() as stack:
        opened: dict[str, OpenSystem] = {}
        for system in systems:
            label = SYSTEM_LABELS[system]
            log(f"{label}: starting")
            started = time.perf_counter()
            opened[system] = await stack.enter_async_context(
                open_system(system, model, served_name, config)
            )
            log(f"{label}: ready after {time.perf_counter() - started:.0f} s; warming up")
            await warm_up(label, opened[system], config)
        for round_index in range(config.rounds):
            round_started = time.perf_counter()
            for concurrency in config.concurrency:
                total = requests_for_level(concurrency, config.requests_per_level)
                for system in round_order(systems, round_index):
                    summary, errors = await measure_level(opened[system], concurrency, total)
                    results[system][str(concurrency)].append(summary)
                    log(
                        f"round {round_index + 1}/{config.rounds} {SYSTEM_LABELS[system]} "
                        f"c={concurrency}: {summary['output_tokens_per_s']:.1f} tok/s, TTFT p50 "
                        f"{summary['ttft_p50_ms']:.0f} ms, "
                        f"{summary['serving_cpu_us_per_token']:.0f} us CPU/token"
                        + (f", {len(errors)} errors, e.g. {errors[0]}" if errors else "")
                    )
            log(f"round {round_index + 1} took {time.perf_counter() - round_started:.0f} s")
        log("stopping the systems")
    return results
