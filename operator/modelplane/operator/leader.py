"""The operator process under leader election: stand by, lead, exit on a lost Lease.

Only the holder of the Lease (election.py) runs kopf; a standby answers liveness meanwhile. When
leadership is lost the process exits non-zero at once (crash-only, like controller-runtime) and
Kubernetes restarts it as a standby; on SIGTERM kopf stops first and the Lease is released after.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from modelplane.operator.election import LeaderElector
from modelplane.operator.metrics import LEADER

log = logging.getLogger(__name__)
# The operator proper (kopf), given its stop flag and a flag it raises once it runs.
Operator = Callable[[asyncio.Event, asyncio.Event], Awaitable[None]]


def exit_on_lost(reason: str) -> None:
    """Crash-only: stop acting at once; Kubernetes restarts the pod, which then stands by."""
    log.critical("Lost leadership: exiting (%s)", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class _Healthz(http.server.BaseHTTPRequestHandler):
    path_served = "/healthz"

    def do_GET(self) -> None:
        found = self.path.split("?")[0] == self.path_served
        body = b"{}" if found else b'{"error": "not found"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the kubelet probes every few seconds: no log line per probe


@contextmanager
def standby_liveness(endpoint: str | None) -> Iterator[None]:
    """Answer the liveness endpoint while standing by; kopf serves it once this one closes."""
    if not endpoint:
        yield
        return
    parts = urlsplit(endpoint)
    handler = type("StandbyHealthz", (_Healthz,), {"path_served": parts.path or "/"})
    server = http.server.ThreadingHTTPServer((parts.hostname or "", parts.port or 80), handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _operate(operator: Operator, stopping: threading.Event) -> None:
    """Run the operator, stopped through its stop flag by SIGTERM/SIGINT at any moment.

    kopf installs its own signal handlers when it starts; they would leave the stop-flag waiter
    hanging for kopf's 5 s grace period, so ours are put back once kopf is ready.
    """
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def handle_signals() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_flag.set)

    async def reclaim_signals() -> None:
        await ready_flag.wait()
        handle_signals()

    handle_signals()
    if stopping.is_set():  # a signal before the loop handled them
        stop_flag.set()
    reclaim = asyncio.create_task(reclaim_signals())
    try:
        await operator(stop_flag, ready_flag)
    finally:
        reclaim.cancel()


def run_as_leader(
    elector: LeaderElector,
    operator: Operator,
    liveness_endpoint: str | None,
    on_lost: Callable[[str], None] = exit_on_lost,
) -> bool:
    """Stand by until leader, run `operator` while renewing, then release the Lease.

    False when stopped (SIGTERM/SIGINT) while standing by. The Lease is released only after the
    operator has stopped, so the next leader never overlaps with this one.
    """
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("Signal %s received: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with standby_liveness(liveness_endpoint):
            if not elector.acquire(stopping):
                return False
        renewing_done = threading.Event()
        renewer = threading.Thread(
            target=elector.keep_leading,
            args=(renewing_done, on_lost),
            name="lease-renewer",
            daemon=True,
        )
        renewer.start()
        LEADER.set(1)
        try:
            asyncio.run(_operate(operator, stopping))
        except asyncio.CancelledError:
            pass  # as kopf.run: a cancelled operator has stopped
        finally:
            for sig in previous:  # the closed event loop reset them to the defaults
                signal.signal(sig, on_signal)
            renewing_done.set()
            renewer.join()
            elector.release()
            LEADER.set(0)
        return True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
