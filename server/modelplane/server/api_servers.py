"""`--api-server-count N`: N front-end processes over one engine core, by vLLM's own mechanism.

One Python process streams a few thousand tokens a second (HTTP, JSON, detokenizing); a GPU
engine produces more at high concurrency. As `vllm serve --api-server-count` does, this
process binds the listening socket and one ZMQ input/output listener pair per front end,
launches the engine core, then spawns N modelplane servers that accept on the shared socket
and each talk to the engine as client `i` of `N` (AsyncLLM's `client_count`/`client_index`).

Per-process state stays per process: admission limits, rate limits and `/metrics` count what
the answering process saw (each front end's `modelplane_requests_in_flight` is its share).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from modelplane.server.settings import ServerSettings

logger = logging.getLogger("modelplane.server")


def exit_on_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGINT unwind through `run_api_servers`' `finally`: front ends, then engine."""
    raise SystemExit(0)


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every front end accepts on (SO_REUSEPORT, as vLLM's multi-server setup)."""
    from vllm.entrypoints.launchers.launcher import create_server_socket

    return create_server_socket((host, port), reuse_port=True)


def api_server_process(
    listen_address: str, sock: socket.socket, args: argparse.Namespace, client_config: Any
) -> None:
    """One front end (a spawned process): the usual server, its engine client given by vLLM."""
    from modelplane.server.cli import build_settings, log_level
    from modelplane.server.lifecycle import serve
    from modelplane.server.logging_config import configure_logging

    configure_logging(args.log_format, log_level(args))
    # vLLM's process manager shares the accept load through this; uvicorn does not use it.
    client_config = dict(client_config or {})
    client_config.pop("api_server_loads", None)
    serve(build_settings(args), sock=sock, client_config=client_config)


def start_api_servers(
    settings: ServerSettings,
    args: argparse.Namespace,
    sock: socket.socket,
    listeners: Any,
    *,
    stats_update_address: str | None = None,
    tensor_queue: Any = None,
    target: Callable[..., None] = api_server_process,
) -> Any:
    """Spawn `settings.api_server_count` front ends on `sock`, one per ZMQ listener pair."""
    from vllm.v1.utils import APIServerProcessManager

    return APIServerProcessManager(
        listen_address=settings.base_url.removesuffix("/v1"),
        sock=sock,
        args=args,
        num_servers=settings.api_server_count,
        input_listeners=listeners.inputs,
        output_listeners=listeners.outputs,
        target_server_fn=target,
        stats_update_address=stats_update_address,
        tensor_queue=tensor_queue,
    )


def run_api_servers(settings: ServerSettings, args: argparse.Namespace) -> None:
    """Bind, launch the engine core, spawn the front ends; return when one of them exits."""
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.utils import bind_engine_zmq_listeners, launch_core_engines
    from vllm.v1.executor import Executor
    from vllm.v1.utils import wait_for_completion_or_failure

    count = settings.api_server_count
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)
    sock = listening_socket(settings.host, settings.port)
    engine_args = settings.engine_args
    engine_args._api_process_count = count
    engine_args._api_process_rank = -1
    vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    listeners = bind_engine_zmq_listeners(vllm_config, count)
    with launch_core_engines(
        vllm_config,
        Executor.get_class(vllm_config),
        not engine_args.disable_log_stats,
        listeners.addresses,
    ) as launch:
        coordinator = launch.coordinator
        manager = start_api_servers(
            settings,
            args,
            sock,
            listeners,
            stats_update_address=(coordinator.get_stats_publish_address() if coordinator else None),
            tensor_queue=launch.tensor_queue,
        )
        launch.watched_frontend_processes = manager.processes
    logger.info("%d API server processes over one engine core on %s", count, settings.base_url)
    try:
        wait_for_completion_or_failure(
            api_server_manager=manager,
            engine_manager=launch.engine_manager,
            coordinator=coordinator,
        )
    finally:
        # The front ends drain on SIGTERM (bounded by --drain-timeout), then the engine stops.
        manager.shutdown(timeout=settings.drain_timeout + 5)
        if launch.engine_manager is not None:
            launch.engine_manager.shutdown(timeout=vllm_config.shutdown_timeout)
        if coordinator is not None:
            coordinator.shutdown(timeout=vllm_config.shutdown_timeout)
        sock.close()
