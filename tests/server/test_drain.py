"""SIGTERM: /ready fails at once, new work gets 503, in-flight work finishes, exit code 0.

This stops the shared server, so conftest.py runs it after every other test.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from server_harness import RunningServer

from modelplane.server import cli
from modelplane.server.lifecycle import drain
from modelplane.server.state import Phase, init_state

MODEL = "smollm2-135m-instruct"


async def test_drain_waits_for_in_flight_requests_then_returns() -> None:
    state = init_state(cli.build_settings(cli.parse_args(["--model", "/m"], {})))
    state.phase = Phase.READY
    state.in_flight = 1
    assert await drain(state, timeout=0.2) is False
    assert state.phase is Phase.DRAINING
    state.in_flight = 0
    assert await drain(state, timeout=0.2) is True


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits_0(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    body = {"model": MODEL, "prompt": "Count to ten:", "max_tokens": 300, "ignore_eos": True}
    result: dict[str, httpx.Response] = {}

    def long_request() -> None:
        result["response"] = httpx.post(
            f"{server.api_url}/completions", json=body, headers=headers, timeout=120
        )

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 30
    while (
        "modelplane_requests_in_flight 1.0"
        not in httpx.get(f"{server.base_url}/metrics", timeout=30).text
    ):
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.05)

    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(f"{server.base_url}/ready", timeout=30).status_code == 503
    refused = httpx.post(f"{server.api_url}/completions", json=body, headers=headers, timeout=30)
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "service_unavailable"
    assert refused.headers["x-request-id"]

    worker.join(120)
    response = result["response"]
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] == 300
    assert server.process.wait(60) == 0
    assert "Drained" in server.log_text()
