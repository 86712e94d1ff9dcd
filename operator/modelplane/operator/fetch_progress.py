"""How far the fetch Job got: its pod's last JSON progress line, in the WeightsCached message.

Channel: the fetch command prints `{"event":"progress","source","bytesDone","bytesTotal",
"bytesPerSecond"}` on stdout every 10 s, and the operator reads the tail of the fetch pod's
log (`GET pods/<pod>/log?container=fetch&tailLines=20&limitBytes=16384`). That costs the
operator `get` on `pods/log` (it already lists pods for the termination message) and gives the
fetch pod, which downloads from the internet, no API credentials at all; the alternatives
were worse: an annotation written by the pod needs a token that can patch objects, a scrape of
the pod's IP fails behind NetworkPolicies, and the termination message comes only at the end.

`FetchProgressMonitor` keeps the answers (one log read per Job per interval, so reconciles in
between reuse it and write nothing new) and the set of ModelDeployments whose fetch runs, which
`run` refreshes every interval. No kopf timer: a timer puts kopf's finalizer on the object.
The CLI builds one per operator and `handlers.register` hands it to the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelplane.operator.kube import Kube, KubeError

log = logging.getLogger(__name__)

CONTAINER = "fetch"  # resources/fetch_job.CONTAINER_NAME (imported there from here would cycle)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
TAIL_LINES = 20  # progress lines come every 10 s; a few other events may follow the last one
LIMIT_BYTES = 16 * 1024  # a traceback in the tail never makes the read large
DEFAULT_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class FetchProgress:
    """One progress line of the fetch command."""

    source: str
    bytes_done: int
    bytes_total: int
    bytes_per_second: int

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> FetchProgress:
        return cls(
            source=str(line.get("source") or ""),
            bytes_done=int(line["bytesDone"]),
            bytes_total=int(line["bytesTotal"]),
            bytes_per_second=int(line.get("bytesPerSecond") or 0),
        )

    def text(self) -> str:
        """`hf://org/model: 1.2 GiB of 15.3 GiB (8%), 95.0 MiB/s`."""
        percent = int(100 * self.bytes_done / self.bytes_total) if self.bytes_total else 100
        what = f"{self.source}: " if self.source else ""
        return (
            f"{what}{human_bytes(self.bytes_done)} of {human_bytes(self.bytes_total)}"
            f" ({percent}%), {human_bytes(self.bytes_per_second)}/s"
        )


def human_bytes(count: float) -> str:
    """Binary units with one decimal: 0 B, 512 B, 1.5 KiB, 15.3 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{int(count)} B" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def last_progress(log_text: str) -> FetchProgress | None:
    """The last progress line of a log tail; other lines (and a torn first line) are skipped."""
    for line in reversed(log_text.splitlines()):
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and data.get("event") == "progress":
                return FetchProgress.from_line(data)
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _fetch_pod(kube: Kube, namespace: str, job_name: str) -> str | None:
    """The name of the Job's newest pod (a replaced pod resumes; its log is the current one)."""
    pods = [
        pod
        for pod in kube.list("v1", "Pod", namespace, f"{JOB_NAME_LABEL}={job_name}")
        if (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job_name
    ]
    if not pods:
        return None
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return str(pods[-1]["metadata"]["name"])


class FetchProgressMonitor:
    """The fetch progress of running Jobs, read at most once per interval per Job."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._read: dict[tuple[str, str], tuple[float, FetchProgress | None]] = {}
        self._fetching: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._denied_reported = False

    def progress(self, kube: Kube, namespace: str, job_name: str) -> FetchProgress | None:
        """The last progress line of the Job's pod; None before the first (or if unreadable)."""
        key = (namespace, job_name)
        now = self._clock()
        with self._lock:
            cached = self._read.get(key)
        if cached is not None and now - cached[0] < self.interval:
            return cached[1]
        progress = cached[1] if cached else None
        try:
            pod = _fetch_pod(kube, namespace, job_name)
            text = (
                kube.pod_log(
                    namespace, pod, CONTAINER, tail_lines=TAIL_LINES, limit_bytes=LIMIT_BYTES
                )
                if pod
                else None
            )
            if text is not None:
                progress = last_progress(text) or progress
        except KubeError as error:
            if error.status == 403 and not self._denied_reported:
                self._denied_reported = True
                log.warning(
                    "Fetch progress is not shown: %s (grant get on pods/log)", error.summary()
                )
            elif error.status != 403:
                log.info(
                    "Could not read the fetch progress of %s/%s: %s",
                    namespace,
                    job_name,
                    error.summary(),
                )
        with self._lock:
            self._read[key] = (now, progress)
        return progress

    def note(self, namespace: str, name: str, job_name: str, fetching: bool) -> None:
        """Record whether a ModelDeployment's fetch runs (refreshed by `run` while it does)."""
        with self._lock:
            if fetching:
                self._fetching.add((namespace, name))
            else:
                self._fetching.discard((namespace, name))
                self._read.pop((namespace, job_name), None)

    def fetching(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._fetching)

    async def run(self, refresh: Callable[[str, str], bool]) -> None:
        """Every interval, `refresh(namespace, name)` each fetching ModelDeployment in a thread;
        it returns False once the fetch no longer runs (or the object is gone)."""
        while True:
            await asyncio.sleep(self.interval)
            for namespace, name in self.fetching():
                try:
                    running = await asyncio.to_thread(refresh, namespace, name)
                except Exception as error:  # a refresh must not end the loop
                    log.warning("Fetch progress of %s/%s: %s", namespace, name, error)
                    continue
                if not running:
                    with self._lock:
                        self._fetching.discard((namespace, name))

    def start(self, refresh: Callable[[str, str], bool]) -> None:
        """Start `run` on the running event loop (kopf's), once."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(refresh))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
