"""Fetch progress end to end: the real fetch command, its pod's log, the real operator's status.

The fetch command (`python -m modelplane.server.fetch`) downloads the bundled model from the
loopback hub (tests/server/fake_hub.py, throttled so it takes seconds), its stdout going to a
file. The emulator plays the kubelet's part of `GET pods/<pod>/log` from that file (taught in
tests/operator/kube_emulator.py: tailLines, limitBytes, 400 before the container runs), and
tests/operator/fetch_job_controller.py the Job controller's (the pod, the Job's conditions).
The operator runs with a 1 s refresh instead of 10 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelplane.server.default_model import default_model_dir, is_prepared
from tests.operator.fetch_job_controller import finish_fetch_job, start_fetch_pod
from tests.operator.operator_process import (
    DEPLOYMENTS,
    NS,
    Cluster,
    OperatedCluster,
    operated_cluster,
    wait_for,
)
from tests.server.fake_hub import FakeHub, serve_hub

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_prepared(default_model_dir()), reason="bundled model not converted"),
]

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
WEIGHTS = "model.safetensors"
REFRESH_SECONDS = 1.0
PROGRESS = re.compile(
    rf"^Job smol-fetch: fetching hf://{REPO}: (?P<done>[\d.]+ [KMG]?i?B) of (?P<total>[\d.]+ MiB)"
    r" \((?P<percent>\d+)%\), (?P<rate>[\d.]+ [KMG]?i?B)/s; serving pods start when it succeeds$"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    with serve_hub(FakeHub(REPO, default_model_dir())) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatedCluster]:
    logs = tmp_path_factory.mktemp("operator")
    with operated_cluster(logs, "--fetch-progress-interval", f"{REFRESH_SECONDS}s") as running:
        yield running


def weights_cached(cluster: Cluster, name: str) -> dict[str, Any]:
    status = cluster.md(name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "WeightsCached"), {})


def status_writes(cluster: Cluster, name: str) -> int:
    return sum(1 for w in cluster.emulator.writes if w == ("PATCH", "modeldeployments", NS, name))


def test_weights_cached_shows_the_fetch_pods_progress_and_writes_only_when_it_moves(
    cluster: Cluster, hub: FakeHub, tmp_path: Path
) -> None:
    cluster.create_md(
        "smol",
        {
            "model": {"uri": f"hf://{REPO}"},
            "cache": {"size": "5Gi"},
            "resources": {"gpu": {"count": 0}},
        },
    )
    pod = start_fetch_pod(cluster, "smol")
    # Before the container writes a line, the log answers 400: the message names the sources.
    waiting = wait_for(lambda: (c := weights_cached(cluster, "smol")) and c, what="WeightsCached")
    assert waiting["status"] == "Unknown" and f"downloading hf://{REPO}" in waiting["message"]

    hub.throttle[WEIGHTS] = 60 * 1024 * 1024  # ~9 s for the 513 MiB of weights
    log_path, summary_path = tmp_path / "fetch.log", tmp_path / "termination-log"
    cluster.emulator.pod_logs[NS, pod, "fetch"] = log_path
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "cache")}
    env.pop("HF_HUB_OFFLINE", None)
    argv = [sys.executable, "-m", "modelplane.server.fetch", f"hf://{REPO}"]
    argv += ["--progress-interval", "0.5", "--summary-file", str(summary_path)]
    with log_path.open("w") as out:
        fetch = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        first = wait_for(
            lambda: PROGRESS.match(weights_cached(cluster, "smol").get("message", "")),
            what="a progress message",
            details=lambda: weights_cached(cluster, "smol"),
        )
        total = sum(f.size for f in hub.files.values())
        assert first["total"] == f"{total / 1024**2:.1f} MiB"
        # Refreshed while the Job runs, never more often than the refresh interval.
        writes_before, started = status_writes(cluster, "smol"), time.monotonic()
        later = wait_for(
            lambda: (
                (m := PROGRESS.match(weights_cached(cluster, "smol").get("message", "")))
                and int(m["percent"]) > int(first["percent"])
                and m
            ),
            what="a later progress message",
        )
        assert later["rate"].endswith("MiB")
        time.sleep(3 * REFRESH_SECONDS)
        elapsed = time.monotonic() - started
        writes = status_writes(cluster, "smol") - writes_before
        assert 1 <= writes <= elapsed / REFRESH_SECONDS + 1, (writes, elapsed)

        # A stalled download (the process stopped: no new log line) changes nothing: no writes.
        fetch.send_signal(signal.SIGSTOP)
        time.sleep(2.5 * REFRESH_SECONDS)  # the last line read before the stop is written
        stalled_at, stalled_message = (
            status_writes(cluster, "smol"),
            weights_cached(cluster, "smol"),
        )
        time.sleep(4 * REFRESH_SECONDS)
        assert status_writes(cluster, "smol") == stalled_at
        assert weights_cached(cluster, "smol") == stalled_message
        fetch.send_signal(signal.SIGCONT)
        hub.throttle.clear()
        assert fetch.wait(timeout=120) == 0, log_path.read_text()[-2000:]
    finally:
        if fetch.poll() is None:
            fetch.send_signal(signal.SIGCONT)
            fetch.kill()
            fetch.wait()

    summary = json.loads(summary_path.read_text())
    finish_fetch_job(cluster, "smol", summary, "Complete", pod_name=pod)
    cached = wait_for(
        lambda: (c := weights_cached(cluster, "smol")) and c["status"] == "True" and c,
        what="WeightsCached=True",
    )
    assert cached["message"].startswith(f"hf://{REPO}@{hub.commit[:12]}: 0.5 GiB in")
    cluster.wait_get(f"{DEPLOYMENTS}/smol")
