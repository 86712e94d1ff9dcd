"""One JSON usage line per request, attributed to the key's name, never holding the key."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from modelplane.server.logging_config import JsonFormatter
from modelplane.server.request_record import RequestRecord
from modelplane.server.usage import usage_fields
from tests.server.server_harness import RunningServer

MODEL = "smollm2-135m-instruct"
FIELDS = {
    "request_id",
    "key_name",
    "model",
    "route",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "latency_ms",
}


def test_usage_fields_in_milliseconds() -> None:
    record = RequestRecord("r1", "/v1/chat/completions", key_name="alice", model=MODEL)
    record.first_token_at = record.started_at + 0.25
    record.finished_at = record.started_at + 1.5
    fields = usage_fields(record)
    assert set(fields) == FIELDS
    assert (fields["ttft_ms"], fields["latency_ms"]) == (250.0, 1500.0)


def test_json_formatter_merges_fields_into_one_line() -> None:
    record = logging.LogRecord("modelplane.usage", logging.INFO, "", 0, "request", None, None)
    record.fields = {"request_id": "r1", "status": 200}
    line = orjson.loads(JsonFormatter().format(record))
    assert line["logger"] == "modelplane.usage"
    assert (line["request_id"], line["status"], line["message"]) == ("r1", 200, "request")


@pytest.mark.slow
def test_usage_line_for_a_chat_request(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.keys['bob']}", "x-request-id": "usage-chat-1"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    response = httpx.post(
        f"{server.api_url}/chat/completions", json=body, headers=headers, timeout=120
    )
    assert response.status_code == 200
    usage = response.json()["usage"]

    line = server.usage_line("usage-chat-1")
    assert set(line) >= FIELDS
    assert line["key_name"] == "bob"
    assert line["model"] == MODEL
    assert line["route"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert server.keys["bob"] not in server.log_text()


@pytest.mark.slow
def test_usage_line_for_a_stream_and_for_an_error(
    server: RunningServer, http: httpx.Client
) -> None:
    body = {"model": MODEL, "prompt": "Paris is", "max_tokens": 3, "stream": True}
    with http.stream(
        "POST", "/v1/completions", json=body, headers={"x-request-id": "usage-s"}
    ) as r:
        r.read()
    stream_line = server.usage_line("usage-s")
    assert stream_line["status"] == 200
    assert stream_line["completion_tokens"] == 3
    assert stream_line["key_name"] == "alice"

    http.post(
        "/v1/completions",
        json={"model": "nope", "prompt": "x"},
        headers={"x-request-id": "usage-e"},
    )
    error_line = server.usage_line("usage-e")
    assert error_line["status"] == 404
    assert error_line["completion_tokens"] == 0


@pytest.mark.slow
def test_logs_are_json_lines_in_json_mode(server: RunningServer) -> None:
    """The shared server runs with MODELPLANE_LOG_FORMAT=json: vLLM's lines are JSON too."""
    lines = server.json_log_lines()
    assert any(line.get("logger", "").startswith("vllm") for line in lines)
    assert any("ready" in line.get("message", "") for line in lines)
