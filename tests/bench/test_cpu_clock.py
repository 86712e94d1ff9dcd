"""The benchmark's CPU clock: another process' CPU time in ns, agreeing with /proc's ticks."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from bench.cpu_clock import process_cpu_clock_id, process_cpu_ns, process_cpu_seconds

BURN_S = 0.2
# Burns BURN_S of its own CPU time, says so, then sleeps until killed: its clock stands still.
BURNER = f"""
import sys, time
while time.process_time() < {BURN_S}:
    pass
print("burnt", flush=True)
time.sleep(60)
"""
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def burnt() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen([sys.executable, "-c", BURNER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "burnt\n"
        yield child
    finally:
        child.kill()
        child.wait()


def test_clock_id_is_the_one_glibc_gives_for_the_pid(burnt: subprocess.Popen[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in (1, os.getpid(), burnt.pid):  # glibc checks that the process exists
        clock_id = ctypes.c_int()
        assert libc.clock_getcpuclockid(pid, ctypes.byref(clock_id)) == 0
        assert process_cpu_clock_id(pid) == clock_id.value


def test_reads_the_cpu_time_a_child_burnt_in_ns(burnt: subprocess.Popen[str]) -> None:
    """The child stops at BURN_S by its own clock; interpreter start-up adds tens of ms."""
    used = process_cpu_seconds(burnt.pid)
    assert BURN_S <= used < BURN_S + 1.0
    assert process_cpu_ns(burnt.pid) == process_cpu_ns(burnt.pid)  # asleep: it stands still
    assert process_cpu_ns(burnt.pid) % 10_000_000 != 0  # not in whole 10 ms ticks


def test_agrees_with_psutil_to_a_tick_of_user_and_of_system(burnt: subprocess.Popen[str]) -> None:
    """/proc splits the same runtime into user and system and truncates each to ticks."""
    times = psutil.Process(burnt.pid).cpu_times()
    ticks = times.user + times.system
    assert -1e-6 < process_cpu_seconds(burnt.pid) - ticks < 2 * TICK_S


def test_own_cpu_time_advances_in_microseconds_not_ticks() -> None:
    """A tick clock would jump by 10 ms; this one ends a 1 ms burn within a few us of 1 ms."""
    start = process_cpu_ns()
    now = start
    while now - start < 1_000_000:
        now = process_cpu_ns()
    assert now - start < 1_000_000 + TICK_S * 1e9 / 10


def test_a_process_that_is_gone_is_a_clear_error() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process
    with pytest.raises(ProcessLookupError, match=f"process {child.pid} has exited"):
        process_cpu_ns(child.pid)


def test_rejects_a_pid_that_is_no_process_id() -> None:
    with pytest.raises(ValueError):
        process_cpu_clock_id(0)
