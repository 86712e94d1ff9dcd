"""/metrics with several front ends: prometheus_client's multiprocess mode, merged per scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from modelplane.contract import IN_FLIGHT_METRIC
from modelplane.server import api_servers
from modelplane.server.metrics import MULTIPROC_DIR_ENV, exposition_registry
from tests.server.server_harness import metric_value

MODEL = "m"

# One front end's part: N requests in flight, one finished request, then /metrics as it answers.
FRONT_END = """
import os, sys
from modelplane.server.metrics import default_metrics, render_metrics
from modelplane.server.request_record import RequestRecord

metrics = default_metrics()
metrics.in_flight.inc(int(sys.argv[1]))
record = RequestRecord(str(os.getpid()), "/v1/chat/completions", model="m")
record.completion_tokens = 5
record.finished_at = record.started_at + 0.1
metrics.observe_request(record, {"m"})
sys.stdout.write(render_metrics()[0].decode())
print("pid", os.getpid())
"""

SCRAPE = "from modelplane.server.metrics import render_metrics; print(render_metrics()[0].decode())"


def run(code: str, directory: Path, *args: str) -> str:
    env = {**os.environ, MULTIPROC_DIR_ENV: str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_one_process_serves_its_in_memory_registry() -> None:
    assert MULTIPROC_DIR_ENV not in os.environ
    assert exposition_registry() is REGISTRY


def test_every_front_end_reports_the_pods_in_flight_and_counter_sums(tmp_path: Path) -> None:
    first = run(FRONT_END, tmp_path, "2")
    second = run(FRONT_END, tmp_path, "3")
    assert metric_value(first, IN_FLIGHT_METRIC) == 2
    # The second process answers for both: no pid label, no halves.
    assert metric_value(second, IN_FLIGHT_METRIC) == 5
    assert metric_value(second, "modelplane_requests_total", model=MODEL) == 2
    assert metric_value(second, "modelplane_completion_tokens_total", model=MODEL) == 10
    assert metric_value(second, "modelplane_request_latency_seconds_count", model=MODEL) == 2
    assert 'pid="' not in second

    # A front end that stopped no longer holds requests in flight; what it counted stays.
    first_pid = int(first.rsplit("pid", 1)[1])
    api_servers.mark_front_ends_dead([first_pid, None], str(tmp_path))
    after = run(SCRAPE, tmp_path)
    assert metric_value(after, IN_FLIGHT_METRIC) == 3
    assert metric_value(after, "modelplane_requests_total", model=MODEL) == 2


def test_shared_metrics_dir_is_fresh_per_start_and_removed_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    with api_servers.shared_metrics_dir() as first:
        assert os.environ[MULTIPROC_DIR_ENV] == first
        (Path(first) / "counter_1.db").write_bytes(b"")
    assert MULTIPROC_DIR_ENV not in os.environ
    assert not Path(first).exists()
    with api_servers.shared_metrics_dir() as second:
        assert second != first
        assert list(Path(second).iterdir()) == []


def test_a_metrics_dir_set_for_the_pod_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    with api_servers.shared_metrics_dir() as path:
        assert path == str(tmp_path)
    assert os.environ[MULTIPROC_DIR_ENV] == str(tmp_path)
    assert "old values" in caplog.text
