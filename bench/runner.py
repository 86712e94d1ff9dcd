"""Run the serving systems one after another with the same model, flags and workload."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from bench.config import SYSTEM_LABELS, BenchConfig
from bench.openai_stream import make_client, stream_chat
from bench.raw_engine import raw_engine
from bench.servers import (
    free_port,
    modelplane_server_command,
    running_server,
    vllm_server_command,
)
from bench.stats import summarize_level
from bench.workload import SendRequest, requests_for_level, run_level

LevelResults = dict[str, dict[str, float | int]]
# GiB of RAM the CPU engine may use for its KV cache when the caller did not say.
DEFAULT_KVCACHE_GIB = "2"


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
        times = psutil.Process(self.serving_pid).cpu_times()
        return float(times.user + times.system)


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


async def run_system(
    system: str, model: str, served_name: str, config: BenchConfig
) -> LevelResults:
    """Start one system, warm it up, measure every concurrency level, stop it."""
    label = SYSTEM_LABELS[system]
    log(f"{label}: starting")
    started = time.perf_counter()
    results: LevelResults = {}
    async with open_system(system, model, served_name, config) as opened:
        send = opened.send
        log(f"{label}: ready after {time.perf_counter() - started:.0f} s; warming up")
        if config.warmup_requests > 0:
            warm = await run_level(
                send, min(config.warmup_requests, max(config.concurrency)), config.warmup_requests
            )
            failed = [t.error for t in warm.timings if t.error]
            if failed:
                log(f"{label}: {len(failed)} warm-up request(s) failed, e.g. {failed[0]}")
        for concurrency in config.concurrency:
            total = requests_for_level(concurrency, config.requests_per_level)
            cpu_before = opened.serving_cpu_seconds()
            level = await run_level(send, concurrency, total)
            serving_cpu_s = opened.serving_cpu_seconds() - cpu_before
            summary = summarize_level(level.timings, level.wall_s, serving_cpu_s)
            results[str(concurrency)] = summary
            errors = [t.error for t in level.timings if t.error]
            log(
                f"{label}: concurrency {concurrency}: {total} requests in {level.wall_s:.1f} s, "
                f"{summary['output_tokens_per_s']:.0f} tok/s, TTFT p50 {summary['ttft_p50_ms']:.0f} ms, "
                f"{summary['serving_cpu_us_per_token']:.0f} us serving CPU/token"
                + (f", {len(errors)} errors, e.g. {errors[0]}" if errors else "")
            )
    log(f"{label}: stopped")
    return results
