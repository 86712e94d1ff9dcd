"""A client-side limit on the operator's Kubernetes API requests: client-go's token bucket.

`qps` tokens a second refill a bucket of `burst`; each request takes one before it is sent, and
waits when none is left. A wait is a reservation: the caller takes its token (the balance may go
below zero) under a lock held only for that arithmetic, then sleeps outside it, so waiters queue
in order and none of them holds the lock, a connection or a token while it sleeps. A request
that then hangs holds no token: tokens are never given back, they only refill with time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`qps` requests a second on average, `burst` at once; thread-safe."""

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs qps > 0 and burst >= 1 (got {qps}, {burst})")
        self.qps, self.burst = float(qps), int(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)  # starts full, as client-go's
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; seconds to wait before using it (0 when one was there)."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._updated, 0.0)
            self._tokens = min(self.burst, self._tokens + elapsed * self.qps)
            self._updated = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def wait(self) -> float:
        """Block until this caller's token is due; the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay


def bucket(qps: float, burst: int) -> TokenBucket | None:
    """The bucket of `--kube-api-qps`/`--kube-api-burst`; None (no limit) when qps <= 0."""
    return TokenBucket(qps, max(burst, 1)) if qps > 0 else None
