"""Admission control: at most N generation requests run at once, at most M wait for a slot.

A full queue answers 429 with `Retry-After` at once instead of letting latency grow without
bound; the autoscaler sees the pressure through `modelplane_requests_in_flight`.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from modelplane.server.errors import RateLimited


class ConcurrencyLimiter:
    """A FIFO semaphore with a bounded wait queue. `max_concurrent=0` means no limit."""

    def __init__(self, max_concurrent: int, max_queued: int) -> None:
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds to suggest in Retry-After: roughly one per queue's worth of slots."""
        return max(1, math.ceil(self.queued / max(1, self.max_concurrent)))

    async def acquire(self) -> None:
        unlimited = self.max_concurrent <= 0
        if unlimited or (self.active < self.max_concurrent and not self._waiters):
            self.active += 1
            return
        if len(self._waiters) >= self.max_queued:
            raise RateLimited(
                f"The server is at capacity ({self.active} requests running, "
                f"{self.queued} waiting). Retry later.",
                retry_after=self.retry_after(),
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the slot to the oldest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
