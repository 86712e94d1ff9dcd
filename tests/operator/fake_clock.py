"""Virtual time for the leader election (election.Clock): it moves only when a test says so.

`wait` blocks its thread until the virtual time reaches the end of the wait (or the event is
set), so a test can hold the elector's threads at a moment and check what they did. Before
moving time a test calls `sleeping(n)`: it returns once n threads are parked in `wait` and none
is still finishing a wait that has already ended, so each step starts from a settled state.
The only real-time bounds are generous ones that turn a hang into a failure.
"""

from __future__ import annotations

import datetime
import itertools
import threading

SETTLE_S = 10.0  # real seconds: only a broken elector takes this long to reach its next wait
EPOCH = datetime.datetime(2026, 11, 26, 6, 0, 0, tzinfo=datetime.timezone.utc)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self._now = start
        self._cond = threading.Condition()
        self._waits: dict[int, float] = {}  # a wait's number -> its end, while its thread waits
        self._numbers = itertools.count()

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def now(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.monotonic() - self.start)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            number, end = next(self._numbers), self._now + seconds
            self._waits[number] = end
            self._cond.notify_all()
            try:
                while not event.is_set() and self._now < end:
                    self._cond.wait(0.01)  # Event.set() notifies no condition: poll it
            finally:
                del self._waits[number]
                self._cond.notify_all()
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def elapsed(self) -> float:
        return self.monotonic() - self.start

    def sleeping(self, threads: int) -> None:
        """Block until exactly `threads` threads wait for a later moment than now."""

        def settled() -> bool:
            ends = self._waits.values()
            return len(ends) == threads and all(end > self._now for end in ends)

        with self._cond:
            if not self._cond.wait_for(settled, timeout=SETTLE_S):
                raise AssertionError(
                    f"expected {threads} threads waiting at t+{self._now - self.start:g} s, "
                    f"found waits ending at {sorted(e - self.start for e in self._waits.values())}"
                )
