"""The multi-process pod's watch: the first of its processes to end, whatever its exit code.

Real processes, spawned as vLLM spawns front ends, stand in for them: one that serves until
stopped (`time.sleep`) and one that ends with a given code (`sys.exit`). The whole pod over the
real engine is in test_api_servers.py.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from multiprocessing import connection
from multiprocessing.process import BaseProcess

import pytest

from modelplane.server.pod_processes import ProcessEnded, wait_for_first_exit

spawn = multiprocessing.get_context("spawn")


def serving(name: str = "ApiServer_0") -> BaseProcess:
    process = spawn.Process(target=time.sleep, args=(600,), name=name, daemon=True)
    process.start()
    return process


def ending(code: int, name: str = "ApiServer_1") -> BaseProcess:
    process = spawn.Process(target=sys.exit, args=(code,), name=name, daemon=True)
    process.start()
    return process


@pytest.fixture
def running() -> Iterator[BaseProcess]:
    """A front end that keeps serving while another ends."""
    process = serving()
    yield process
    process.kill()
    process.join(5)


class EngineCoresStandIn:
    """vLLM's engine manager as the watch uses it: `monitor_engine_liveness` returns once an
    engine core process ends, naming it in `failed_proc_name` when its code is not 0."""

    def __init__(self, cores: list[BaseProcess]) -> None:
        self.cores = cores
        self.failed_proc_name: str | None = None

    def monitor_engine_liveness(self) -> None:
        (ended, *_) = connection.wait([core.sentinel for core in self.cores])
        core = next(c for c in self.cores if c.sentinel == ended)
        core.join(5)
        if core.exitcode != 0:
            self.failed_proc_name = core.name


def test_a_front_end_that_exits_0_ends_the_wait_every_time(running: BaseProcess) -> None:
    """vLLM's own watch lets most of these go (the pod serves on with fewer front ends) and
    stops on the rest only because it read the code before the process was reaped."""
    for _ in range(8):
        drained = ending(0)
        assert wait_for_first_exit([running, drained]) == ProcessEnded(
            "ApiServer_1", drained.pid, 0
        )


@pytest.mark.parametrize(("code", "how"), [(3, "exit"), (-signal.SIGKILL, "kill")])
def test_a_front_end_that_fails_or_is_killed_is_reported_with_its_code(
    running: BaseProcess, code: int, how: str
) -> None:
    if how == "exit":
        failed = ending(code)
    else:
        failed = serving("ApiServer_1")
        os.kill(failed.pid or 0, signal.SIGKILL)
    ended = wait_for_first_exit([running, failed])
    assert ended == ProcessEnded("ApiServer_1", failed.pid, code)
    assert str(ended) == f"ApiServer_1 (pid {failed.pid}) exited with code {code}"


def test_the_coordinator_ending_ends_the_wait(running: BaseProcess) -> None:
    coordinator = ending(0, name="DPCoordinator")
    ended = wait_for_first_exit([running], coordinator=coordinator)
    assert ended == ProcessEnded("DPCoordinator", coordinator.pid, 0)


@pytest.mark.parametrize(("code", "name"), [(1, "EngineCore_DP0"), (0, "engine core")])
def test_an_engine_core_ending_ends_the_wait(running: BaseProcess, code: int, name: str) -> None:
    """Whatever its code: an engine core that exits 0 while the pod serves is gone all the same."""
    core = ending(code, name="EngineCore_DP0")
    ended = wait_for_first_exit([running], EngineCoresStandIn([core]))
    assert ended == ProcessEnded(name, None, None)
    assert str(ended) == f"{name} exited"
    assert running.is_alive()
