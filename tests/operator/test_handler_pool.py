"""handler_pool.py: a thread per handler in flight, a cap, idle threads exit."""

from __future__ import annotations

import threading
import time

import pytest

from modelplane.operator.handler_pool import HandlerPool
from tests.operator.operator_process import wait_for


def test_work_behind_blocked_work_starts_on_a_new_thread() -> None:
    pool = HandlerPool(max_workers=64)
    release = threading.Event()
    try:
        blocked = [pool.submit(release.wait) for _ in range(20)]
        assert pool.submit(lambda: "healthy").result(timeout=10) == "healthy"
        assert not any(f.done() for f in blocked)
        assert pool.threads == 21
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert all(f.result() for f in blocked)


def test_past_the_cap_work_queues_and_runs_once_a_thread_frees() -> None:
    pool = HandlerPool(max_workers=2)
    release = threading.Event()
    blocked = [pool.submit(release.wait) for _ in range(2)]
    queued = pool.submit(lambda: "ran")
    time.sleep(0.2)
    assert not queued.done()
    assert pool.threads == 2
    release.set()
    assert queued.result(timeout=10) == "ran"
    pool.shutdown(wait=True)
    assert all(f.result() for f in blocked)


def test_idle_threads_exit_and_new_work_starts_new_ones() -> None:
    pool = HandlerPool(max_workers=8, idle_seconds=0.05)
    barrier = threading.Barrier(4)
    for future in [pool.submit(barrier.wait, 10) for _ in range(4)]:
        future.result(timeout=10)
    wait_for(lambda: pool.threads == 0, timeout=10, what="idle threads to exit")
    assert pool.submit(lambda: 7).result(timeout=10) == 7
    pool.shutdown(wait=True)
    assert pool.threads == 0


def test_errors_reach_the_caller_and_shutdown_waits_for_running_work() -> None:
    pool = HandlerPool(max_workers=4)

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pool.submit(fail).result(timeout=10)
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    pool.submit(slow)
    started.wait(10)
    pool.shutdown(wait=True)
    assert finished.is_set()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
