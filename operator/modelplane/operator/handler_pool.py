"""The thread pool kopf runs the sync handlers in: one thread per handler in flight.

kopf runs at most one handler per object at a time, so the threads really needed are the objects
with work in flight. A fixed pool of N lets N objects whose API calls hang hold up every other
object; this pool starts a thread whenever no idle one is waiting (up to `max_workers`, a high
cap), so a stuck object holds only its own thread. A thread idle for `idle_seconds` exits.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, NamedTuple

DEFAULT_IDLE_SECONDS = 60.0


class _Work(NamedTuple):
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to the waiting coroutine, as ThreadPoolExecutor does
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class HandlerPool(Executor):
    """A concurrent.futures executor that grows with the work in flight and shrinks when idle."""

    def __init__(
        self,
        max_workers: int,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        thread_name_prefix: str = "handler",
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._idle_seconds = idle_seconds
        self._prefix = thread_name_prefix
        self._changed = threading.Condition()
        self._queue: collections.deque[_Work] = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._waiting = 0  # threads blocked for work; each will take one queued item
        self._started = 0
        self._shutdown = False

    @property
    def threads(self) -> int:
        """How many threads exist now (busy or idle)."""
        with self._changed:
            return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._changed:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append(_Work(future, fn, args, kwargs))
            # Every waiting thread is already owed one queued item: start another when the
            # queue outgrows them, so new work never waits behind work that does not finish.
            if len(self._queue) > self._waiting and len(self._threads) < self._max_workers:
                self._started += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}-{self._started}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
            else:
                self._changed.notify()
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._changed:
                deadline = time.monotonic() + self._idle_seconds
                while not self._queue:
                    remaining = deadline - time.monotonic()
                    if self._shutdown or remaining <= 0:
                        self._threads.discard(me)
                        self._changed.notify_all()  # shutdown(wait=True) may be waiting
                        return
                    self._waiting += 1
                    try:
                        self._changed.wait(remaining)
                    finally:
                        self._waiting -= 1
                work = self._queue.popleft()
            work.run()
            del work  # drop the result before idling

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Queued work still runs (unless `cancel_futures`); with `wait`, until every thread ended."""
        with self._changed:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._changed.notify_all()
            if wait:
                while self._threads:
                    self._changed.wait()
