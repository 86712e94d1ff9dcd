"""The process: uvicorn run programmatically, and a graceful drain on SIGTERM.

On SIGTERM (or Ctrl-C) the server keeps accepting connections but `/ready` fails and new
generation requests get 503, so the load balancer moves traffic away; requests in flight
finish (bounded by `--drain-timeout`); then uvicorn stops and the engine shuts down. A
second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import MutableSequence
from types import FrameType
from typing import Any

import uvicorn
from vllm.entrypoints.launchers.launcher import NoSignalServer

from modelplane.server.ready_marks import ReadyMarks
from modelplane.server.settings import ServerSettings
from modelplane.server.state import Phase, ServerState, init_state

logger = logging.getLogger("modelplane.server")

# After the drain, how long uvicorn waits for idle connections to close.
CONNECTION_CLOSE_TIMEOUT_S = 5


async def drain(state: ServerState, timeout: float, poll_interval: float = 0.05) -> bool:
    """Stop admitting, wait for in-flight requests; True when they all finished in time."""
    state.leave_ready(Phase.DRAINING)
    deadline = time.monotonic() + timeout
    while state.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(poll_interval)
    return state.in_flight == 0


# Several front ends on one socket: the shared count of each one's open connections, and
# this front end's index in it (vLLM's `api_server_loads`).
PeerLoads = tuple[MutableSequence[int], int]


class DrainingServer(NoSignalServer):
    """uvicorn.Server whose first SIGTERM/SIGINT drains instead of closing the listener.

    Built on vLLM's server class for one reason: with `peer_loads`, a pending connection goes
    to the front end with the fewest open connections, as with `vllm serve --api-server-count`.
    uvicorn's own accept loop hands every queued connection to whichever front end wakes
    first: a burst of 16 went 16/0 or 14/2 between two front ends.
    """

    # vLLM's class leaves the signals to its caller; this one handles them (`handle_exit`).
    capture_signals = uvicorn.Server.capture_signals

    def __init__(
        self, config: uvicorn.Config, state: ServerState, peer_loads: PeerLoads | None = None
    ) -> None:
        super().__init__(config, peer_loads)
        self.state = state
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        state.request_exit = self.exit_with

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def exit_with(self, code: int) -> None:
        self.exit_code = code
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it after serving and the
        # process would die by the signal instead of exiting 0 after a clean drain.
        if self._drain_task is not None or self._loop is None or not self.started:
            self.should_exit = True
            self.force_exit = self._drain_task is not None
            return
        logger.info(
            "Received %s: draining %d request(s) (up to %.0f s)",
            signal.Signals(sig).name,
            self.state.in_flight,
            self.state.settings.drain_timeout,
        )
        self.state.leave_ready(Phase.DRAINING)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        finished = await drain(self.state, self.state.settings.drain_timeout)
        if finished:
            logger.info("Drained; shutting down")
        else:
            logger.warning(
                "Drain timeout: %d request(s) still running are cut off", self.state.in_flight
            )
        self.should_exit = True


def uvicorn_config(settings: ServerSettings, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        log_config=None,  # our logging configuration (logging_config.py) applies
        access_log=False,  # the usage line is the access log
        timeout_graceful_shutdown=CONNECTION_CLOSE_TIMEOUT_S,
        timeout_keep_alive=30,
        lifespan="on",
    )


def serve(
    settings: ServerSettings,
    *,
    sock: socket.socket | None = None,
    client_config: dict[str, Any] | None = None,
    ready_marks: ReadyMarks | None = None,
    peer_loads: PeerLoads | None = None,
) -> None:
    """Run the server until drained or the engine fails; exit with 0 after a clean drain.

    One of several front ends (`api_servers.py`) accepts on the shared `sock` in turn with
    the others (`peer_loads`), reaches the engine core through vLLM's `client_config` and
    shares readiness through `ready_marks`.
    """
    from modelplane.server.app import build_app
    from modelplane.server.middleware import ServerSendInScope

    state = init_state(settings)
    state.engine_client_config = client_config
    state.ready_marks = ready_marks
    app = ServerSendInScope(build_app(settings, state))
    server = DrainingServer(uvicorn_config(settings, app), state, peer_loads)
    server.run(sockets=None if sock is None else [sock])
    sys.exit(server.exit_code)
