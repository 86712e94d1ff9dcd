"""/metrics: vLLM's `vllm:*` metrics and modelplane's own, in one Prometheus exposition."""

from __future__ import annotations

import httpx
import openai
import pytest

from modelplane.server.metrics import ServerMetrics
from modelplane.server.request_record import RequestRecord
from tests.server.server_harness import RunningServer, metric_samples, metric_value

MODEL = "smollm2-135m-instruct"


def test_one_observation_per_request_with_bounded_labels() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = ServerMetrics(registry)
    record = RequestRecord("r1", "/v1/completions", key_name="bob", model=MODEL)
    record.prompt_tokens, record.completion_tokens = 7, 3
    record.first_token_at = record.started_at + 0.05
    record.finished_at = record.started_at + 0.2
    metrics.observe_request(record, {MODEL})
    metrics.observe_request(RequestRecord("r2", "/v1/completions", model="junk-1"), {MODEL})
    text = generate_latest(registry).decode()
    assert metric_value(text, "modelplane_prompt_tokens_total", model=MODEL, key="bob") == 7
    assert metric_value(text, "modelplane_completion_tokens_total", model=MODEL, key="bob") == 3
    assert metric_value(text, "modelplane_requests_total", model="unknown") == 1
    assert metric_value(text, "modelplane_requests_total", model=MODEL, key="bob") == 1
    assert metric_value(text, "modelplane_requests_total", key="anonymous") == 1
    assert metric_value(text, "modelplane_time_to_first_token_seconds_count", model=MODEL) == 1
    assert metric_value(text, "modelplane_request_latency_seconds_count", model=MODEL) == 1


@pytest.mark.slow
def test_vllm_and_modelplane_metrics_after_a_request(
    server: RunningServer, anon_http: httpx.Client
) -> None:
    bob = openai.OpenAI(base_url=server.api_url, api_key=server.keys["bob"], max_retries=0)
    before = anon_http.get("/metrics").text
    answer = bob.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert answer.usage is not None
    response = anon_http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text

    assert metric_samples(text, "vllm:num_requests_running")
    assert metric_value(text, "vllm:request_success_total") >= 1
    labels = {"route": "/v1/chat/completions", "model": MODEL, "status": "200"}
    assert (
        metric_value(text, "modelplane_requests_total", **labels)
        == metric_value(before, "modelplane_requests_total", **labels) + 1
    )
    assert metric_samples(text, "modelplane_requests_in_flight")
    assert metric_value(text, "modelplane_time_to_first_token_seconds_count", model=MODEL) >= 1
    assert metric_value(text, "modelplane_request_latency_seconds_count", model=MODEL) >= 1
    prompt = metric_value(text, "modelplane_prompt_tokens_total", model=MODEL, key="bob")
    completion = metric_value(text, "modelplane_completion_tokens_total", model=MODEL, key="bob")
    assert prompt > metric_value(before, "modelplane_prompt_tokens_total", model=MODEL, key="bob")
    assert completion - metric_value(
        before, "modelplane_completion_tokens_total", model=MODEL, key="bob"
    ) == pytest.approx(answer.usage.completion_tokens)


@pytest.mark.slow
def test_unknown_models_do_not_become_label_values(http: httpx.Client) -> None:
    http.post(
        "/v1/completions", json={"model": "made-up-model-xyz", "prompt": "x", "max_tokens": 1}
    )
    text = http.get("/metrics").text
    assert "made-up-model-xyz" not in text
    assert metric_value(text, "modelplane_requests_total", model="unknown", status="404") >= 1
