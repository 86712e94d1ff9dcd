"""Reading the fetch Job's progress: the log tail parser, the message, and the read throttle."""

from __future__ import annotations

import json
from typing import Any

from modelplane.operator.fetch_progress import (
    FetchProgress,
    FetchProgressMonitor,
    human_bytes,
    last_progress,
)
from modelplane.operator.kube import KubeError

GiB = 1024**3


def line(**fields: Any) -> str:
    return json.dumps({"time": "2026-11-29T17:00:00Z", **fields}, separators=(",", ":"))


def progress_line(done: int, total: int = 15 * GiB, rate: int = 95 * 1024**2) -> str:
    return line(
        event="progress", source="hf://org/m", bytesDone=done, bytesTotal=total, bytesPerSecond=rate
    )


def test_the_last_progress_line_of_a_tail_wins_over_other_events_and_torn_lines() -> None:
    tail = "\n".join(
        [
            'ss":1,"bytesDone":5}',  # limitBytes/tailLines may cut the first line
            progress_line(1 * GiB),
            progress_line(2 * GiB),
            line(event="corrupt", file="model.safetensors", action="refetch"),
            "Traceback (most recent call last):",
        ]
    )
    progress = last_progress(tail)
    assert progress == FetchProgress("hf://org/m", 2 * GiB, 15 * GiB, 95 * 1024**2)
    assert last_progress(line(event="start", bytes=3)) is None
    assert last_progress("") is None


def test_progress_text_states_bytes_done_of_total_percent_and_rate() -> None:
    progress = FetchProgress("hf://org/m", int(1.2 * GiB), int(15.3 * GiB), 95 * 1024**2)
    assert progress.text() == "hf://org/m: 1.2 GiB of 15.3 GiB (7%), 95.0 MiB/s"
    assert FetchProgress("", 0, 0, 0).text() == "0 B of 0 B (100%), 0 B/s"
    assert [human_bytes(n) for n in (512, 1536, 3 * 1024**4)] == ["512 B", "1.5 KiB", "3.0 TiB"]


class FakeKube:
    """The two calls the monitor makes: list the Job's pods, read one pod's log tail."""

    def __init__(self) -> None:
        self.log: str | None = progress_line(1 * GiB)
        self.reads = 0
        self.fail: KubeError | None = None

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Any]:
        assert (kind, selector) == ("Pod", "batch.kubernetes.io/job-name=m-fetch")
        return [
            {"metadata": {"name": n, "labels": {"batch.kubernetes.io/job-name": "m-fetch"},
                          "creationTimestamp": t}}
            for n, t in (("m-fetch-new", "2026-11-29T17:05:00Z"), ("m-fetch-old", "2026-11-29T17:00:00Z"))
        ]  # fmt: skip

    def pod_log(self, namespace: str, name: str, container: str, **limits: int) -> str | None:
        assert (name, container) == ("m-fetch-new", "fetch")  # the newest pod, the fetch container
        assert limits == {"tail_lines": 20, "limit_bytes": 16384}
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.log


def test_the_log_is_read_at_most_once_per_interval_and_the_last_answer_kept() -> None:
    now = [100.0]
    monitor = FetchProgressMonitor(interval=10.0, clock=lambda: now[0])
    kube = FakeKube()
    first = monitor.progress(kube, "ns", "m-fetch")  # type: ignore[arg-type]
    assert first is not None and first.bytes_done == 1 * GiB
    kube.log = progress_line(2 * GiB)
    now[0] += 9.9  # within the interval: the same answer, no API call
    assert monitor.progress(kube, "ns", "m-fetch") == first  # type: ignore[arg-type]
    assert kube.reads == 1
    now[0] += 0.2
    second = monitor.progress(kube, "ns", "m-fetch")  # type: ignore[arg-type]
    assert second is not None and second.bytes_done == 2 * GiB and kube.reads == 2
    # No log (the replacement pod's container is waiting) or an API error: the last answer stays.
    kube.log = None
    now[0] += 10
    assert monitor.progress(kube, "ns", "m-fetch") == second  # type: ignore[arg-type]
    kube.fail = KubeError(403, "GET", "/api/v1/namespaces/ns/pods/m-fetch-new/log", "forbidden")
    now[0] += 10
    assert monitor.progress(kube, "ns", "m-fetch") == second  # type: ignore[arg-type]
    assert kube.reads == 4


def test_fetching_deployments_are_tracked_until_their_fetch_stops() -> None:
    monitor = FetchProgressMonitor()
    monitor.note("ns", "a", "a-fetch", fetching=True)
    monitor.note("ns", "b", "b-fetch", fetching=True)
    monitor.note("ns", "a", "a-fetch", fetching=False)
    assert monitor.fetching() == [("ns", "b")]
