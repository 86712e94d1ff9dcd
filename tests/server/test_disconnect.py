"""A client that goes away aborts its engine request; the in-flight gauge returns to 0."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.server.server_harness import RunningServer, metric_value

MODEL = "smollm2-135m-instruct"
# Long enough that only an abort ends it within the test's patience.
LONG = {"model": MODEL, "prompt": "Write a long story.", "max_tokens": 2000, "ignore_eos": True}


def wait_until_idle(http: httpx.Client, timeout: float = 60) -> str:
    """Poll /metrics until nothing is in flight in modelplane nor running in vLLM."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = http.get("/metrics").text
        if (
            metric_value(text, "modelplane_requests_in_flight") == 0
            and metric_value(text, "vllm:num_requests_running") == 0
            and metric_value(text, "vllm:num_requests_waiting") == 0
        ):
            return text
        time.sleep(0.1)
    raise AssertionError(f"still busy after {timeout} s:\n{text}")


@pytest.mark.slow
def test_stream_disconnect_aborts_and_in_flight_returns_to_zero(
    server: RunningServer, http: httpx.Client
) -> None:
    headers = {"x-request-id": "disconnect-stream"}
    with http.stream(
        "POST", "/v1/completions", json={**LONG, "stream": True}, headers=headers
    ) as r:
        assert r.status_code == 200
        chunks = r.iter_bytes()  # kept referenced: a dropped iterator closes the stream
        next(chunks)
        busy = http.get("/metrics").text
        assert metric_value(busy, "modelplane_requests_in_flight") >= 1
    wait_until_idle(http)
    usage = server.usage_line("disconnect-stream")
    assert usage["status"] == 499
    assert 0 < usage["completion_tokens"] < 2000


@pytest.mark.slow
def test_non_stream_disconnect_aborts_and_in_flight_returns_to_zero(
    server: RunningServer,
) -> None:
    headers = {"Authorization": f"Bearer {server.key}", "x-request-id": "disconnect-json"}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{server.api_url}/completions", json=LONG, headers=headers, timeout=2)
    with httpx.Client(base_url=server.base_url) as probe:
        wait_until_idle(probe)
    assert server.usage_line("disconnect-json")["status"] == 499
