"""`python -m bench ceiling`: how many tokens/s the serving front end can stream, engine aside.

The real HTTP stack (modelplane's app under uvicorn: chat template and tokenizer, vLLM's
output processor and detokenizer, SSE) over `synthetic_engine`, an engine core stand-in that
is never the bottleneck, driven by `sse_load`'s thin client. For each front-end process count
(`--api-server-count`, vLLM's mechanism) it reports output tokens/s and the front ends' CPU
time per token. The floor is the same measured on vLLM's bare `AsyncLLM` in one process
(chat template, tokenize, `generate`, no HTTP) over the same synthetic engine; the HTTP
floor (`http_floor`) is uvicorn alone streaming canned SSE chunks to the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bench.config import BenchConfig
from bench.cpu_clock import process_cpu_seconds
from bench.servers import free_port
from bench.sse_load import LoadCounters, generated_token_ends, run_streams
from bench.stats import SPREAD_SUFFIX, median_and_iqr, ratio
from bench.synthetic_engine import LAG_STEPS, run_synthetic_engine

if TYPE_CHECKING:
    from vllm.inputs import TokensPrompt
    from vllm.renderers.chat_utils import ChatCompletionMessageParam

# The text the synthetic engine "generates", cycled: real words, so detokenizing costs what
# it costs on real output.
GENERATED_TEXT = (
    "The sea is calm tonight. The tide is full, the moon lies fair upon the straits; on the "
    "French coast the light gleams and is gone; the cliffs of England stand, glimmering and "
    "vast, out in the tranquil bay. Come to the window, sweet is the night-air! "
)
PROMPT = "Write a short poem about the sea."


def generated_token_ids(tokenizer: Any) -> list[int]:
    """The token ids the synthetic engine generates (cycled), in this tokenizer's vocabulary."""
    return list(tokenizer.encode(GENERATED_TEXT, add_special_tokens=False))


@dataclass
class CeilingPoint:
    processes: int
    streams: int
    output_tokens_per_s: float
    serving_cpu_us_per_token: float
    tokens_per_event: float
    errors: int


def log(message: str) -> None:
    print(f"[ceiling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pids: Sequence[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


def server_args(
    model: str, served_name: str, port: int, processes: int, stream_interval: int = 1
) -> argparse.Namespace:
    from modelplane.server.cli import parse_args

    argv = [
        "--model", model, "--served-model-name", served_name, "--enforce-eager",
        "--host", "127.0.0.1", "--port", str(port), "--api-server-count", str(processes),
        "--max-concurrent-requests", "0", "--stream-interval", str(stream_interval),
    ]  # fmt: skip
    return parse_args(argv, {})


@contextlib.contextmanager
def synthetic_engine(
    vllm_config: Any,
    token_ids: Sequence[int],
    clients: int,
    received: Any,
    lag_steps: int = LAG_STEPS,
) -> Iterator[Any]:
    """Bind `clients` ZMQ listener pairs, start the synthetic engine on them, generating
    `token_ids` (`generated_token_ids`) over and over; yield them.

    `lag_steps`: how far the engine may run ahead of the client (`synthetic_engine`'s
    pacing); a front end at `--stream-interval N` holds up to N tokens of each stream back,
    so it needs N steps' worth."""
    from vllm.v1.engine.utils import bind_engine_zmq_listeners

    listeners = bind_engine_zmq_listeners(vllm_config, clients)
    spawn = multiprocessing.get_context("spawn")
    engine = spawn.Process(
        target=run_synthetic_engine,
        args=(
            listeners.addresses.inputs,
            listeners.addresses.outputs,
            token_ids,
            received,
            lag_steps,
        ),
        name="SyntheticEngine",
        daemon=True,
    )
    engine.start()
    try:
        yield listeners
    finally:
        engine.terminate()
        engine.join(5)
        for listener in (*listeners.inputs, *listeners.outputs):
            with contextlib.suppress(Exception):
                listener.cleanup()


def _tokenizer(vllm_config: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)


def streamed_token_ends(tokenizer: Any, token_ids: Sequence[int], max_tokens: int) -> list[int]:
    """Where each token the synthetic engine generates (`token_ids`, cycled) ends in a
    stream's content (bytes as sent), so the load client credits tokens as their text
    arrives, merged events included."""
    generated = [token_ids[i % len(token_ids)] for i in range(max_tokens)]
    prefixes = [
        tokenizer.decode(generated[: k + 1], clean_up_tokenization_spaces=False)
        for k in range(max_tokens)
    ]
    return generated_token_ends(prefixes)


async def measure_window(
    host: str,
    port: int,
    served_name: str,
    streams: int,
    max_tokens: int,
    warmup_s: float,
    measure_s: float,
    pids: Sequence[int],
    received: Any,
    stream_interval: int = 1,
    token_ends: Sequence[int] | None = None,
) -> tuple[float, float, float, int]:
    """(tokens/s, CPU us/token, tokens per event, errors) over the window after the warm-up."""
    counters = LoadCounters()

    def on_tokens(count: int) -> None:
        received.value += count

    start = time.perf_counter()
    stop_at = start + warmup_s + measure_s
    load = asyncio.ensure_future(
        run_streams(
            host, port, served_name, streams, max_tokens, stop_at, counters, on_tokens,
            tokens_per_event=stream_interval, token_ends=token_ends,
        )
    )  # fmt: skip
    await asyncio.sleep(warmup_s)
    tokens0, events0, cpu0, t0 = (
        received.value,
        counters.content_events,
        cpu_seconds(pids),
        time.perf_counter(),
    )
    await asyncio.sleep(measure_s)
    tokens1, cpu1, t1 = received.value, cpu_seconds(pids), time.perf_counter()
    await load
    tokens = tokens1 - tokens0
    events = max(1, counters.content_events - events0)
    return (
        tokens / (t1 - t0),
        (cpu1 - cpu0) * 1e6 / max(1, tokens),
        counters.completion_tokens / max(1, counters.content_events) if events else 0.0,
        counters.errors,
    )


def wait_ready(port: int, timeout_s: float = 1200.0) -> None:
    """Until /ready answers 200: with several front ends on the port, every one of them is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"front ends not ready after {timeout_s:.0f} s")


# One measured window at a number of streams, on a system kept running between windows.
Measure = Callable[[int], CeilingPoint]


@contextlib.contextmanager
def front_ends(
    model: str,
    served_name: str,
    processes: int,
    options: CeilingOptions,
    stream_interval: int = 1,
) -> Iterator[Measure]:
    """`processes` modelplane front ends over the synthetic engine, running until the block
    ends; yields their `Measure`."""
    from modelplane.server.api_servers import (
        listening_socket,
        shared_metrics_dir,
        start_api_servers,
    )
    from modelplane.server.cli import build_settings
    from modelplane.server.ready_marks import ready_marks_dir

    port = free_port()
    args = server_args(model, served_name, port, processes, stream_interval)
    settings = build_settings(args)
    vllm_config = settings.engine_args.create_engine_config()
    tokenizer = _tokenizer(vllm_config)
    token_ids = generated_token_ids(tokenizer)
    token_ends = streamed_token_ends(tokenizer, token_ids, options.max_tokens)
    spawn = multiprocessing.get_context("spawn")
    received = spawn.RawValue("q", 0)
    # Several front ends keep their metrics in files and their readiness in marks, as
    # `run_api_servers` sets them up.
    several = processes > 1
    metrics_dir = shared_metrics_dir() if several else contextlib.nullcontext()
    ready_dir = ready_marks_dir() if several else contextlib.nullcontext(None)
    with (
        metrics_dir,
        ready_dir as ready_path,
        synthetic_engine(
            vllm_config, token_ids, processes, received, LAG_STEPS * stream_interval
        ) as listeners,
    ):
        sock = listening_socket("127.0.0.1", port)
        manager = start_api_servers(settings, args, sock, listeners, ready_dir=ready_path)
        try:
            wait_ready(port)
            pids = [p.pid for p in manager.processes]
            log(f"{processes} front end(s) ready, pids {' '.join(map(str, pids))}")

            def measure(level: int) -> CeilingPoint:
                rate, cpu_us, per_event, errors = asyncio.run(
                    measure_window("127.0.0.1", port, served_name, level, options.max_tokens,
                                   options.warmup_s, options.measure_s, pids, received,
                                   stream_interval, token_ends)
                )  # fmt: skip
                log(f"modelplane x{processes} interval {stream_interval}, {level} streams: "
                    f"{rate:.0f} tok/s, "
                    f"{cpu_us:.0f} us CPU/token, {per_event:.2f} tokens/event, {errors} errors")  # fmt: skip
                return CeilingPoint(processes, level, rate, cpu_us, per_event, errors)

            yield measure
        finally:
            manager.shutdown(timeout=10)
            sock.close()


def raw_floor_process(
    model: str,
    client_config: dict[str, Any],
    options: CeilingOptions,
    received: Any,
    commands: Any,
) -> None:
    """AsyncLLM in one process over the synthetic engine: the front end minus HTTP.

    It measures one window per number of streams it reads from `commands` (a Connection),
    sending back (tokens/s, CPU us/token), until it reads None."""
    import uvloop

    from bench.raw_engine import parse_engine_args, sampling_params

    async def main() -> None:
        from vllm.usage.usage_lib import UsageContext
        from vllm.utils.gc_utils import freeze_gc_heap
        from vllm.v1.engine.async_llm import AsyncLLM

        engine_args = parse_engine_args(model, "raw", ["--enforce-eager"])
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        llm = AsyncLLM.from_vllm_config(
            vllm_config=vllm_config, client_addresses=client_config, client_count=1, client_index=0,
            disable_log_stats=False,
        )  # fmt: skip
        # Its startup heap frozen, as vLLM's server and modelplane's freeze theirs.
        freeze_gc_heap()
        tokenizer = llm.get_tokenizer()
        params = sampling_params(options.max_tokens)
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
        ids = iter(range(10**9))
        loop = asyncio.get_running_loop()

        async def window(streams: int) -> tuple[float, float]:
            stop_at = time.perf_counter() + options.warmup_s + options.measure_s

            async def stream_loop() -> None:
                while time.perf_counter() < stop_at:
                    text = tokenizer.apply_chat_template(
                        messages, tokenize=False, add_generation_prompt=True
                    )
                    assert isinstance(text, str)  # tokenize=False
                    prompt: TokensPrompt = {
                        "prompt_token_ids": tokenizer.encode(text, add_special_tokens=False)
                    }
                    async for output in llm.generate(prompt, params, f"raw-{next(ids)}"):
                        received.value += len(output.outputs[0].token_ids)

            load = asyncio.gather(*(stream_loop() for _ in range(streams)))
            await asyncio.sleep(options.warmup_s)
            tokens0, cpu0, t0 = received.value, process_cpu_seconds(), time.perf_counter()
            await asyncio.sleep(options.measure_s)
            tokens1, cpu1, t1 = received.value, process_cpu_seconds(), time.perf_counter()
            await load
            tokens = max(1, tokens1 - tokens0)
            return tokens / (t1 - t0), (cpu1 - cpu0) * 1e6 / tokens

        while (streams := await loop.run_in_executor(None, commands.recv)) is not None:
            commands.send(await window(streams))
        llm.shutdown()

    uvloop.run(main())


@contextlib.contextmanager
def raw_floor(model: str, options: CeilingOptions) -> Iterator[Measure]:
    """The AsyncLLM floor's process and its synthetic engine, running until the block ends;
    yields its `Measure`."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    vllm_config = AsyncEngineArgs(model=model, enforce_eager=True).create_engine_config()
    spawn = multiprocessing.get_context("spawn")
    received = spawn.RawValue("q", 0)
    token_ids = generated_token_ids(_tokenizer(vllm_config))
    with synthetic_engine(vllm_config, token_ids, 1, received) as listeners:
        client_config = {
            "input_address": listeners.inputs[0].address,
            "output_address": listeners.outputs[0].address,
            "input_listener": listeners.inputs[0].socket,
            "output_listener": listeners.outputs[0].socket,
        }
        commands, child_end = spawn.Pipe()
        proc = spawn.Process(
            target=raw_floor_process,
            args=(model, client_config, options, received, child_end),
            name="RawFloor",
        )
        proc.start()

        def measure(level: int) -> CeilingPoint:
            commands.send(level)
            rate, cpu_us = commands.recv()
            log(f"raw AsyncLLM, {level} streams: {rate:.0f} tok/s, {cpu_us:.0f} us CPU/token")
            return CeilingPoint(0, level, rate, cpu_us, 1.0, 0)

        try:
            yield measure
        finally:
            with contextlib.suppress(OSError):
                commands.send(None)
            proc.join(30)
            if proc.is_alive():
                proc.terminate()


@dataclass(frozen=True)
class CeilingOptions:
    max_tokens: int = 64
    warmup_s: float = 3.0
    measure_s: float = 10.0


def run_setup(options: CeilingOptions, load_before: float) -> dict[str, Any]:
    """What a ceiling run was measured with, and the machine's load before and after it."""
    return {
        "measure_s": options.measure_s,
        "max_tokens": options.max_tokens,
        "cpu_count": os.cpu_count(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def interleave(
    systems: Mapping[str, contextlib.AbstractContextManager[Measure]],
    levels: Sequence[int],
    rounds: int,
) -> dict[str, dict[int, list[CeilingPoint]]]:
    """Start every system, then `rounds` rounds: each level on every system in turn, the
    order reversed every other round, so that the drift of a shared machine falls on all of
    them alike; the systems wait, started, while the others are measured. Each system's
    points per level, one per round."""
    points: dict[str, dict[int, list[CeilingPoint]]] = {
        name: {level: [] for level in levels} for name in systems
    }
    with contextlib.ExitStack() as stack:
        measures = {name: stack.enter_context(system) for name, system in systems.items()}
        names = list(measures)
        for round_index in range(rounds):
            log(f"round {round_index + 1} of {rounds}")
            for level in levels:
                for name in names if round_index % 2 == 0 else names[::-1]:
                    points[name][level].append(measures[name](level))
    return points


def summarize_points(
    points: Sequence[CeilingPoint], cpu_key: str, floor: Sequence[CeilingPoint] | None = None
) -> dict[str, Any]:
    """One system at one level over its rounds: medians with their interquartile range
    (`<figure>_iqr`) and, given the AsyncLLM floor's points of the same rounds, the CPU per
    token over the floor's, taken round by round (`cpu_to_floor`)."""
    rate, rate_iqr = median_and_iqr([p.output_tokens_per_s for p in points])
    cpu, cpu_iqr = median_and_iqr([p.serving_cpu_us_per_token for p in points])
    row: dict[str, Any] = {
        "streams": points[0].streams,
        "output_tokens_per_s": rate,
        "output_tokens_per_s" + SPREAD_SUFFIX: rate_iqr,
        cpu_key: cpu,
        cpu_key + SPREAD_SUFFIX: cpu_iqr,
        "tokens_per_event": median_and_iqr([p.tokens_per_event for p in points])[0],
        "errors": sum(p.errors for p in points),
        "rounds": len(points),
    }
    if floor is not None:
        row["cpu_to_floor"], row["cpu_to_floor" + SPREAD_SUFFIX] = median_and_iqr(
            [
                ratio(p.serving_cpu_us_per_token, f.serving_cpu_us_per_token)
                for p, f in zip(points, floor, strict=True)
            ]
        )
    return row


def run_ceiling(model: str, served_name: str, config: BenchConfig) -> dict[str, Any]:
    """`frontend_ceiling` and the floors it is compared with for latest.json: `frontend_floor`
    (AsyncLLM, no HTTP), `frontend_http_floor` (uvicorn streaming canned SSE, nothing else)
    and `frontend_write_floor` (the same bytes written straight to the socket), all measured
    in the same interleaved rounds."""
    from bench.http_floor import transport_floor
    from bench.write_floor import serve_write_floor

    options = CeilingOptions(max_tokens=config.ceiling_tokens, measure_s=config.ceiling_seconds)
    load_before = os.getloadavg()[0]
    systems: dict[str, contextlib.AbstractContextManager[Measure]] = {
        "floor": raw_floor(model, options),
        "http_floor": transport_floor(model, served_name, options),
        "write_floor": transport_floor(
            model,
            served_name,
            options,
            serve=serve_write_floor,
            label="write floor (asyncio transport, canned SSE)",
        ),
        **{
            f"x{count}": front_ends(model, served_name, count, options)
            for count in config.ceiling_processes
        },
    }
    points = interleave(systems, config.ceiling_streams, config.rounds)
    floor, levels = points["floor"], config.ceiling_streams
    return {
        # The machine's load says how far to trust the absolute figures; the ratios, taken
        # round by round, hold better on a shared machine.
        "frontend_ceiling_setup": {**run_setup(options, load_before), "rounds": config.rounds},
        "frontend_ceiling": [
            {
                "processes": count,
                **summarize_points(
                    points[f"x{count}"][level], "serving_cpu_us_per_token", floor[level]
                ),
            }
            for count in config.ceiling_processes
            for level in levels
        ],
        "frontend_floor": [summarize_points(floor[level], "cpu_us_per_token") for level in levels],
        **{
            f"frontend_{name}": [
                summarize_points(points[name][level], "cpu_us_per_token", floor[level])
                for level in levels
            ]
            for name in ("http_floor", "write_floor")
        },
    }


def run_stream_interval_ceiling(
    model: str, served_name: str, config: BenchConfig
) -> dict[str, Any]:
    """`frontend_ceiling_stream_interval`: one front end at each `--stream-interval` and the
    AsyncLLM floor (at interval 1), measured in the same interleaved rounds."""
    options = CeilingOptions(max_tokens=config.ceiling_tokens, measure_s=config.ceiling_seconds)
    load_before = os.getloadavg()[0]
    intervals = config.ceiling_stream_intervals
    systems: dict[str, contextlib.AbstractContextManager[Measure]] = {
        "floor": raw_floor(model, options),
        **{
            f"interval {interval}": front_ends(
                model, served_name, 1, options, stream_interval=interval
            )
            for interval in intervals
        },
    }
    points = interleave(systems, config.ceiling_streams, config.rounds)
    floor, levels = points["floor"], config.ceiling_streams
    return {
        "frontend_ceiling_stream_interval_setup": {
            **run_setup(options, load_before),
            "rounds": config.rounds,
            # The floor is AsyncLLM at stream interval 1, measured in the same rounds.
            "floor": [summarize_points(floor[level], "cpu_us_per_token") for level in levels],
        },
        "frontend_ceiling_stream_interval": [
            {
                "stream_interval": interval,
                "processes": 1,
                **summarize_points(
                    points[f"interval {interval}"][level], "serving_cpu_us_per_token", floor[level]
                ),
            }
            for interval in intervals
            for level in levels
        ],
    }
