"""Admission control: at most N generation requests run at once, at most M wait for a slot;
optionally per-key requests/tokens per minute.

A full queue answers 429 with `Retry-After` at once instead of letting latency grow without
bound; the autoscaler sees the pressure through `modelplane_requests_in_flight`.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

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


class TokenBucket:
    """`per_minute` units, refilled continuously; may go negative when charged after the fact."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return self.level

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)


@dataclass(frozen=True)
class BudgetState:
    """One key's budget as OpenAI's `x-ratelimit-*` headers report it."""

    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again


class KeyRateLimiter:
    """Per-API-key requests/minute and tokens/minute (`--rate-limit-*-per-minute`).

    Requests are counted on admission; tokens (prompt + completion) are charged when the
    request finishes, so a key over its token budget is refused until the bucket refills.
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def _bucket(self, buckets: dict[str, TokenBucket], key: str, per_minute: int) -> TokenBucket:
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(per_minute, self.clock())
        return bucket

    def admit(self, key: str) -> None:
        """Count one request for `key`, or raise RateLimited with the wait in Retry-After."""
        now = self.clock()
        if self.tokens_per_minute:
            tokens = self._bucket(self._tokens, key, self.tokens_per_minute)
            if tokens.refill(now) <= 0:
                raise RateLimited(
                    f"Rate limit reached for key '{key}': {self.tokens_per_minute} tokens "
                    "per minute.",
                    retry_after=math.ceil(tokens.seconds_until(1)),
                )
        if self.requests_per_minute:
            requests = self._bucket(self._requests, key, self.requests_per_minute)
            if requests.refill(now) < 1:
                raise RateLimited(
                    f"Rate limit reached for key '{key}': {self.requests_per_minute} requests "
                    "per minute.",
                    retry_after=max(1, math.ceil(requests.seconds_until(1))),
                )
            requests.level -= 1

    def budgets(self, key: str) -> dict[str, BudgetState]:
        """`requests` and/or `tokens` (those configured): limit, remaining, time to full."""
        now = self.clock()
        states: dict[str, BudgetState] = {}
        for kind, buckets, per_minute in (
            ("requests", self._requests, self.requests_per_minute),
            ("tokens", self._tokens, self.tokens_per_minute),
        ):
            if not per_minute:
                continue
            bucket = self._bucket(buckets, key, per_minute)
            level = bucket.refill(now)
            states[kind] = BudgetState(
                limit=per_minute,
                remaining=max(0, math.floor(level)),
                reset_s=bucket.seconds_until(bucket.capacity),
            )
        return states

    def charge(self, key: str, tokens: int) -> None:
        if self.tokens_per_minute and tokens:
            bucket = self._bucket(self._tokens, key, self.tokens_per_minute)
            bucket.refill(self.clock())
            bucket.level -= tokens
