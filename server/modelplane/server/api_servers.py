"""`--api-server-count N`: N front-end processes over one engine core, by vLLM's own mechanism.

One Python process streams a few thousand tokens a second (HTTP, JSON, detokenizing); a GPU
engine produces more at high concurrency. As `vllm serve --api-server-count` does, this
process binds the listening socket and one ZMQ input/output listener pair per front end,
launches the engine core, then spawns N modelplane servers that accept on the shared socket
(the one with the fewest open connections takes the next, by vLLM's `api_server_loads`) and
each talk to the engine as client `i` of `N` (AsyncLLM's `client_count`/`client_index`).

`/metrics` speaks for the pod whichever front end answers: the front ends inherit a fresh
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, as vLLM sets it up for its
own API servers) and each scrape merges every process's files. `/ready` speaks for the pod too:
200 only once every front end is ready and none is draining (`ready_marks.py`).

Admission limits are the pod's: `--max-concurrent-requests` and `--max-queued-requests` are
divided among the front ends (rounded up), as vLLM's `--max-num-queued-reqs` caps the pod and
not each API server. Per-key rate limits stay per process, as they are per replica: a key held
to one connection gets its whole budget; one spread over N front ends gets up to N times it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import signal
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import multiprocess

from modelplane.server.metrics import MULTIPROC_DIR_ENV
from modelplane.server.pod_processes import wait_for_first_exit
from modelplane.server.ready_marks import ReadyMarks, ready_marks_dir
from modelplane.server.settings import ServerSettings

logger = logging.getLogger("modelplane.server")


def exit_on_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGINT unwind through `run_api_servers`' `finally`: front ends, then engine."""
    raise SystemExit(0)


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A fresh `PROMETHEUS_MULTIPROC_DIR` for this start, set before any front end exists.

    Spawned front ends inherit it before importing prometheus_client, which then keeps metric
    values in files there. A directory the operator of the pod set is used, with a warning:
    files left from an earlier run would be counted again.
    """
    given = os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        logger.warning(
            "%s=%s is set: empty it between starts or /metrics counts old values",
            MULTIPROC_DIR_ENV,
            given,
        )
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="modelplane-metrics-") as path:
        os.environ[MULTIPROC_DIR_ENV] = path
        try:
            yield path
        finally:
            del os.environ[MULTIPROC_DIR_ENV]


def mark_front_ends_dead(pids: Iterable[int | None], path: str) -> None:
    """A stopped front end's in-flight gauge no longer counts (its counters still do)."""
    for pid in pids:
        if pid is not None:
            multiprocess.mark_process_dead(pid, path)


def front_end_settings(settings: ServerSettings) -> ServerSettings:
    """One front end's share of the pod's admission limits (0, no limit, stays 0)."""
    count = settings.api_server_count
    return dataclasses.replace(
        settings,
        max_concurrent_requests=math.ceil(settings.max_concurrent_requests / count),
        max_queued_requests=math.ceil(settings.max_queued_requests / count),
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every front end accepts on (SO_REUSEPORT, as vLLM's multi-server setup)."""
    from vllm.entrypoints.launchers.launcher import create_server_socket

    return create_server_socket((host, port), reuse_port=True)


def api_server_process(
    listen_address: str,
    sock: socket.socket,
    args: argparse.Namespace,
    client_config: Any,
    ready_dir: str | None = None,
) -> None:
    """One front end (a spawned process): the usual server, its engine client given by vLLM."""
    from modelplane.server.cli import build_settings, log_level
    from modelplane.server.lifecycle import serve
    from modelplane.server.logging_config import configure_logging

    configure_logging(args.log_format, log_level(args))
    # The front ends' open-connection counts, shared so the least loaded accepts; not for
    # the engine client.
    client_config = dict(client_config or {})
    loads = client_config.pop("api_server_loads", None)
    marks = ReadyMarks.for_front_end(ready_dir, client_config)
    try:
        serve(
            front_end_settings(build_settings(args)),
            sock=sock,
            client_config=client_config,
            ready_marks=marks,
            peer_loads=None if loads is None else (loads, client_config["client_index"]),
        )
    finally:
        if marks is not None:
            marks.withdraw()
        path = os.environ.get(MULTIPROC_DIR_ENV)
        if path:
            mark_front_ends_dead([os.getpid()], path)


def start_api_servers(
    settings: ServerSettings,
    args: argparse.Namespace,
    sock: socket.socket,
    listeners: Any,
    *,
    ready_dir: str | None,
    stats_update_address: str | None = None,
    tensor_queue: Any = None,
    target: Callable[..., None] = api_server_process,
) -> Any:
    """Spawn `settings.api_server_count` front ends on `sock`, one per ZMQ listener pair.

    With several, each marks itself ready in `ready_dir` (`ready_marks.py`); None: /ready
    speaks for the front end that answers only.
    """
    from vllm.v1.utils import APIServerProcessManager

    return APIServerProcessManager(
        listen_address=settings.base_url.removesuffix("/v1"),
        sock=sock,
        args=args,
        num_servers=settings.api_server_count,
        input_listeners=listeners.inputs,
        output_listeners=listeners.outputs,
        target_server_fn=functools.partial(target, ready_dir=ready_dir),
        stats_update_address=stats_update_address,
        tensor_queue=tensor_queue,
    )


def run_api_servers(settings: ServerSettings, args: argparse.Namespace) -> None:
    """Bind, launch the engine core, spawn the front ends; exit 1 when one of them ends."""
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)
    with shared_metrics_dir() as metrics_dir, ready_marks_dir() as ready_dir:
        serve_front_ends(settings, args, metrics_dir, ready_dir)


def serve_front_ends(
    settings: ServerSettings, args: argparse.Namespace, metrics_dir: str, ready_dir: str
) -> None:
    """The engine core and the front ends, stopped in that order's reverse."""
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.utils import bind_engine_zmq_listeners, launch_core_engines
    from vllm.v1.executor import Executor

    count = settings.api_server_count
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
            ready_dir=ready_dir,
            stats_update_address=(coordinator.get_stats_publish_address() if coordinator else None),
            tensor_queue=launch.tensor_queue,
        )
        launch.watched_frontend_processes = manager.processes
    share = front_end_settings(settings)
    logger.info(
        "%d API server processes over one engine core on %s; each admits %d running, %d queued",
        count,
        settings.base_url,
        share.max_concurrent_requests,
        share.max_queued_requests,
    )
    try:
        ended = wait_for_first_exit(
            manager.processes,
            launch.engine_manager,
            coordinator.proc if coordinator is not None else None,
        )
        logger.error("%s while the pod was serving: stopping the pod", ended)
        # Non-zero: the container is reported failed (Error, not Completed) and restarted
        # under any restart policy.
        raise SystemExit(1)
    finally:
        # The front ends drain on SIGTERM (bounded by --drain-timeout), then the engine stops.
        manager.shutdown(timeout=settings.drain_timeout + 5)
        mark_front_ends_dead((p.pid for p in manager.processes), metrics_dir)
        if launch.engine_manager is not None:
            launch.engine_manager.shutdown(timeout=vllm_config.shutdown_timeout)
        if coordinator is not None:
            coordinator.shutdown(timeout=vllm_config.shutdown_timeout)
        sock.close()
