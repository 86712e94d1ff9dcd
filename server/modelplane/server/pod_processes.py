"""With `--api-server-count N`, the pod stops whole when any of its processes ends on its own.

The parent holds the listening socket, N front ends and the engine core. vLLM's
`wait_for_completion_or_failure` stops only on a non-zero exit code, read without reaping the
process: a front end that exits 0 (drained, uvicorn stopped) is mostly let go, and the pod
serves on fewer front ends (/ready 503 for good: one mark is missing) or, once all are gone,
waits on the engine for ever with the socket still bound. Now and then it reads the exit code
before the process is reaped (None) and stops after all, logging "died with exit code 0".

Here any front end, engine core or DP coordinator ending while the pod serves ends the wait,
its exit code read after reaping; the parent then stops the rest and exits non-zero, so the
kubelet restarts the container.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import Any

# How long to wait for an ended process to be reaped (it has closed its sentinel: it is
# exiting; only the kernel's bookkeeping is left).
REAP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProcessEnded:
    """A process of the pod that ended while the pod was serving."""

    name: str
    pid: int | None
    exitcode: int | None  # None: not known (an engine core, reported by vLLM's manager)

    def __str__(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        code = f" with code {self.exitcode}" if self.exitcode is not None else ""
        return f"{self.name}{pid} exited{code}"


def engine_ended(engine_manager: Any) -> connection.Connection:
    """A connection that is ready (EOF) once vLLM's engine manager sees an engine core end.

    `monitor_engine_liveness` is the manager's own watch, local processes or Ray actors; on a
    death it also stops the other engine cores.
    """
    receive, send = connection.Pipe(duplex=False)

    def monitor() -> None:
        try:
            engine_manager.monitor_engine_liveness()
        finally:
            send.close()

    threading.Thread(target=monitor, name="engine-liveness", daemon=True).start()
    return receive


def wait_for_first_exit(
    front_ends: Sequence[BaseProcess],
    engine_manager: Any = None,
    coordinator: BaseProcess | None = None,
) -> ProcessEnded:
    """Block until a front end, an engine core or the coordinator ends; say which, and how.

    Whatever the exit code: none of them ends while the pod serves unless something went
    wrong. A signal to this process (SIGTERM) interrupts the wait through its handler.
    """
    watched: dict[Any, BaseProcess | None] = {p.sentinel: p for p in front_ends}
    if coordinator is not None:
        watched[coordinator.sentinel] = coordinator
    engine = engine_ended(engine_manager) if engine_manager is not None else None
    if engine is not None:
        watched[engine] = None
    try:
        ready = set(connection.wait(list(watched)))
    finally:
        if engine is not None:
            engine.close()
    # Both may be ready when one's end took the other down: a process says more (its code).
    for sentinel, process in watched.items():
        if sentinel in ready and process is not None:
            process.join(REAP_TIMEOUT_S)
            return ProcessEnded(process.name, process.pid, process.exitcode)
    return ProcessEnded(engine_manager.failed_proc_name or "engine core", None, None)
