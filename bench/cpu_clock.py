"""A process' CPU time in nanoseconds, not in the 10 ms clock ticks of /proc's `stat`.

psutil's `cpu_times()` reads /proc/<pid>/stat, counted in clock ticks (USER_HZ, 100 per
second): a 200 ms window over a process using 50% of a core reads as 10 ticks, give or take
one, so per-token figures came out quantized. Linux gives every process a CPU-time clock
that `clock_gettime` reads in nanoseconds (the scheduler's runtime, all threads, exited
threads included, children excluded, like psutil's user + system); its id is the pid packed
as glibc's `clock_getcpuclockid` packs it, after the kernel's `MAKE_PROCESS_CPUCLOCK`:
`(~pid << 3) | CPUCLOCK_SCHED`. A read costs about 1 us.
"""

from __future__ import annotations

import errno
import os
import time

CPUCLOCK_SCHED = 2  # the kernel's CPUCLOCK_{PROF,VIRT,SCHED} = 0, 1, 2: SCHED is the exact one


def process_cpu_clock_id(pid: int) -> int:
    """The clock id of `pid`'s CPU-time clock, as glibc's `clock_getcpuclockid` computes it."""
    if pid <= 0:
        raise ValueError(f"not a process id: {pid}")
    return (~pid << 3) | CPUCLOCK_SCHED


def process_cpu_ns(pid: int | None = None) -> int:
    """CPU time (user + system, all threads) `pid` has used, in ns; this process' by default.

    Raises ProcessLookupError when `pid` is gone (a zombie still reads its final total). A
    pid the kernel reused would read the new process: read only processes you started.
    """
    if pid is None or pid == os.getpid():
        return time.process_time_ns()
    try:
        return time.clock_gettime_ns(process_cpu_clock_id(pid))
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ESRCH):
            raise ProcessLookupError(f"process {pid} has exited: no CPU clock to read") from exc
        raise


def process_cpu_seconds(pid: int | None = None) -> float:
    """`process_cpu_ns` in seconds (a float keeps ns precision for 100 days of CPU)."""
    return process_cpu_ns(pid) / 1e9
