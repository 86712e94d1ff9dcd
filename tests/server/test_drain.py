"""SIGTERM: /ready fails at once, new work gets 503, in-flight work finishes, exit code 0.

This stops the shared server, so conftest.py runs it after every other test.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import orjson
import pytest

from modelplane.server import cli
from modelplane.server.lifecycle import drain
from modelplane.server.state import Phase, init_state
from tests.server.server_harness import RunningServer, log_tail, metric_value

MODEL = "smollm2-135m-instruct"
# Long enough to still run after SIGTERM on a fast CPU, short enough for the drain budget.
LONG_REQUEST_TOKENS = 128


async def test_drain_waits_for_in_flight_requests_then_returns() -> None:
    state = init_state(cli.build_settings(cli.parse_args(["--model", "/m"], {})))
    state.phase = Phase.READY
    state.in_flight = 1
    assert await drain(state, timeout=0.2) is False
    assert state.phase is Phase.DRAINING
    state.in_flight = 0
    assert await drain(state, timeout=0.2) is True


def wait_until_idle(server: RunningServer, timeout: float = 120) -> None:
    """No request of an earlier test may still run, in HTTP or in the engine."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=30).text
        busy = sum(
            metric_value(metrics, name)
            for name in (
                "modelplane_requests_in_flight",
                "vllm:num_requests_running",
                "vllm:num_requests_waiting",
            )
        )
        if busy == 0:
            return
        assert time.monotonic() < deadline, "the server never became idle"
        time.sleep(0.1)


class StreamingRequest(threading.Thread):
    """A long streamed completion; `generating` is set once its first token has arrived."""

    def __init__(self, server: RunningServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.generating = threading.Event()
        self.status_code = 0
        self.tokens = 0
        self.finish_reason: str | None = None
        self.done = False
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": MODEL,
            "prompt": "Count to ten:",
            "max_tokens": LONG_REQUEST_TOKENS,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {"Authorization": f"Bearer {self.server.key}"}
        try:
            with httpx.stream(
                "POST",
                f"{self.server.api_url}/completions",
                json=body,
                headers=headers,
                timeout=120,
            ) as response:
                self.status_code = response.status_code
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        self.done = True
                        continue
                    chunk = orjson.loads(line.removeprefix("data: "))
                    if chunk["choices"]:
                        self.generating.set()
                        self.finish_reason = chunk["choices"][0]["finish_reason"] or None
                    if chunk.get("usage"):
                        self.tokens = chunk["usage"]["completion_tokens"]
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error
        finally:
            self.generating.set()


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits_0(server: RunningServer) -> None:
    wait_until_idle(server)
    long_request = StreamingRequest(server)
    long_request.start()
    assert long_request.generating.wait(60), "the long request never started generating"
    assert long_request.error is None, long_request.error

    server.process.send_signal(signal.SIGTERM)
    try:
        ready = httpx.get(f"{server.base_url}/ready", timeout=30)
    except httpx.ConnectError:
        pytest.fail(f"the server stopped listening during the drain:\n{log_tail(server.log_path)}")
    assert ready.status_code == 503
    headers = {"Authorization": f"Bearer {server.key}"}
    body = {"model": MODEL, "prompt": "Count to ten:", "max_tokens": 5}
    refused = httpx.post(f"{server.api_url}/completions", json=body, headers=headers, timeout=30)
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "service_unavailable"
    assert refused.headers["x-request-id"]

    long_request.join(120)
    assert long_request.error is None, long_request.error
    assert long_request.status_code == 200
    assert long_request.tokens == LONG_REQUEST_TOKENS
    assert long_request.finish_reason == "length"
    assert long_request.done
    assert server.process.wait(60) == 0, log_tail(server.log_path)
    assert "Drained" in server.log_text()
