"""The client-side QPS/burst limit (rate_limit.TokenBucket) and `Kube` under it.

Virtual time: `Ticker.sleep` moves the clock instead of sleeping, so no wall-clock wait is
asserted. The emulator counts every request it receives (`received`).
"""

from __future__ import annotations

import threading

import pytest

from modelplane.operator.kube import Kube
from modelplane.operator.rate_limit import TokenBucket, bucket
from tests.operator.kube_emulator import start_emulator


class Ticker:
    """A clock that moves only when someone sleeps on it (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_bucket_lets_a_burst_through_then_paces_at_qps() -> None:
    ticks = Ticker()
    limit = TokenBucket(qps=10, burst=3, clock=ticks.clock, sleep=ticks.sleep)
    delays = [limit.reserve() for _ in range(6)]  # six callers at the same instant
    assert delays[:3] == [0.0, 0.0, 0.0]
    assert delays[3:] == pytest.approx([0.1, 0.2, 0.3])  # each reserves the next token


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    ticks = Ticker()
    limit = TokenBucket(qps=2, burst=4, clock=ticks.clock, sleep=ticks.sleep)
    assert [limit.reserve() for _ in range(4)] == [0.0] * 4
    ticks.now += 1.0  # 2 tokens back
    assert [limit.reserve() for _ in range(2)] == [0.0, 0.0]
    assert limit.reserve() == pytest.approx(0.5)
    ticks.now += 3600  # a long idle time refills to the burst, no more
    assert [limit.reserve() for _ in range(4)] == [0.0] * 4
    assert limit.reserve() == pytest.approx(0.5)


def test_wait_sleeps_only_for_the_missing_token() -> None:
    ticks = Ticker()
    limit = TokenBucket(qps=4, burst=1, clock=ticks.clock, sleep=ticks.sleep)
    assert limit.wait() == 0.0
    assert limit.wait() == pytest.approx(0.25)
    assert ticks.slept == [pytest.approx(0.25)]


def test_a_waiting_caller_blocks_no_other_caller() -> None:
    """The sleep happens outside the lock: while one caller waits for its token, another still
    gets its own reservation at once (it queues behind by the rate, not by the sleeper)."""
    ticks = Ticker()
    asleep, wake = threading.Event(), threading.Event()

    def parked_sleep(seconds: float) -> None:
        asleep.set()
        assert wake.wait(timeout=10)

    limit = TokenBucket(qps=1, burst=1, clock=ticks.clock, sleep=parked_sleep)
    limit.reserve()  # the bucket is empty
    sleeper = threading.Thread(target=limit.wait)
    sleeper.start()
    try:
        assert asleep.wait(timeout=10)
        assert limit.reserve() == pytest.approx(2.0)  # answered while the other sleeps
    finally:
        wake.set()
        sleeper.join(timeout=10)
    assert not sleeper.is_alive()


def test_zero_qps_means_no_limit_and_bad_values_are_refused() -> None:
    assert bucket(0, 100) is None
    assert bucket(-1, 100) is None
    limit = bucket(50, 100)
    assert limit is not None and (limit.qps, limit.burst) == (50.0, 100)
    with pytest.raises(ValueError):
        TokenBucket(qps=5, burst=0)


def test_a_limited_kube_sends_at_most_burst_plus_qps_times_t() -> None:
    qps, burst, calls = 5, 10, 40
    ticks = Ticker()
    with start_emulator() as running:
        limit = TokenBucket(qps=qps, burst=burst, clock=ticks.clock, sleep=ticks.sleep)
        kube = Kube(running.api_client(), rate_limit=limit)
        start, before = ticks.now, running.emulator.received
        for _ in range(calls):
            assert kube.get("v1", "Service", "default", "absent") is None
            sent = running.emulator.received - before
            assert sent <= burst + qps * (ticks.now - start) + 1e-9
        assert running.emulator.received - before == calls
        # ...and no stricter than that: the first `burst` at once, the rest at `qps`.
        assert ticks.now - start == pytest.approx((calls - burst) / qps)
        assert ticks.slept[:1] == [pytest.approx(1 / qps)] and len(ticks.slept) == calls - burst


def test_an_unlimited_kube_never_waits() -> None:
    with start_emulator() as running:
        kube = Kube(running.api_client())
        before = running.emulator.received
        for _ in range(20):
            kube.get("v1", "Service", "default", "absent")
        assert running.emulator.received - before == 20
