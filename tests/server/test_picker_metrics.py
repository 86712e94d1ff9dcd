"""The serving pod speaks the endpoint picker's language: the metrics the llm-d router EPP scrapes.

The EPP's model-server protocol (llm-d router v0.10.0 docs/plugin-metric-protocol.md, vLLM
mapping in its core-metrics-extractor): queue depth, running requests, KV-cache use (the queue
and KV-cache scorers, flow control's saturation), LoRA adapters (the LoRA-affinity scorer) and
the cache geometry (prefix-cache auto-tuning). Checked on the real server's /metrics, with and
without LoRA adapters, idle and under load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.server_harness import RunningServer, start_server
from tests.server.test_lora import ADAPTER, BASE, RANK, write_lora_adapter

pytestmark = pytest.mark.slow

GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")
LORA_INFO = "vllm:lora_requests_info"
CACHE_INFO = "vllm:cache_config_info"
MAX_LORAS = 2
MAX_NUM_SEQS = 2  # more concurrent requests than this wait in vLLM's queue


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    family = families(text).get(name)
    return [] if family is None else [(s.labels, s.value) for s in family.samples]


def value(text: str, name: str) -> float:
    return sum(v for _, v in samples(text, name))


def check_picker_metrics(text: str) -> dict[str, Any]:
    """The gauges and the cache geometry, typed as the EPP reads them."""
    found = families(text)
    for name in (*GAUGES, CACHE_INFO):
        assert name in found, f"{name} missing from /metrics"
        assert found[name].type == "gauge", (name, found[name].type)
        assert found[name].samples, name
    assert 0.0 <= value(text, "vllm:kv_cache_usage_perc") <= 1.0
    (labels, info), *_ = samples(text, CACHE_INFO)
    # The EPP parses these labels as integers (prefix-cache auto-tuning).
    assert int(labels["block_size"]) > 0
    assert int(labels["num_gpu_blocks"]) > 0
    assert info == 1.0
    return found


def test_picker_metrics_without_lora(server: RunningServer, anon_http: httpx.Client) -> None:
    found = check_picker_metrics(anon_http.get("/metrics").text)
    # vLLM exports the LoRA gauge only with --enable-lora; the EPP's extractor treats a missing
    # LoRA metric as "no adapters" (not as stale metrics), so flow control still dispatches.
    assert LORA_INFO not in found


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from modelplane.server.default_model import ensure_default_model

    workdir = tmp_path_factory.mktemp("picker-metrics")
    write_lora_adapter(workdir / "adapter", ensure_default_model())
    running = start_server(
        workdir,
        [
            "--enable-lora",
            "--max-lora-rank", str(RANK),
            "--max-loras", str(MAX_LORAS),
            "--lora-modules", f"{ADAPTER}={workdir / 'adapter'}",
            "--max-num-seqs", str(MAX_NUM_SEQS),
        ],
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def lora_labels(text: str) -> dict[str, str]:
    """The labels of the newest vllm:lora_requests_info sample (the EPP reads the newest too)."""
    entries = samples(text, LORA_INFO)
    assert entries, f"{LORA_INFO} missing"
    labels, _stamp = max(entries, key=lambda entry: entry[1])
    return labels


def test_picker_metrics_with_lora(lora_server: RunningServer) -> None:
    text = httpx.get(f"{lora_server.base_url}/metrics", timeout=30).text
    found = check_picker_metrics(text)
    # Declared from the start; vLLM writes its first series with the first scheduled step.
    assert found[LORA_INFO].type == "gauge"
    client = openai.OpenAI(base_url=lora_server.api_url, api_key="unused", max_retries=0)
    client.completions.create(model=ADAPTER, prompt="Hello", max_tokens=2)
    text = httpx.get(f"{lora_server.base_url}/metrics", timeout=30).text
    labels = lora_labels(text)
    assert set(labels) >= {"max_lora", "running_lora_adapters", "waiting_lora_adapters"}
    assert labels["max_lora"] == str(MAX_LORAS)
    # Its value is the time of the last update: the EPP picks the newest series by it.
    assert max(v for _, v in samples(text, LORA_INFO)) > time.time() - 24 * 3600


def test_picker_metrics_move_under_load(lora_server: RunningServer) -> None:
    """Concurrent requests for the adapter: queued, running, KV cache in use, adapter running."""
    client = openai.OpenAI(base_url=lora_server.api_url, api_key="unused", max_retries=0)
    requests = MAX_NUM_SEQS * 3
    errors: list[BaseException] = []

    def generate(index: int) -> None:
        try:
            client.completions.create(
                model=ADAPTER if index % 2 == 0 else BASE,
                prompt=f"Count slowly from {index} to one hundred: " + "one two three " * 20,
                max_tokens=48,
                temperature=0,
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=generate, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    seen: dict[str, float] = {name: 0.0 for name in GAUGES}
    running_adapters: set[str] = set()
    with httpx.Client(base_url=lora_server.base_url, timeout=30) as http:
        deadline = time.monotonic() + 240
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            text = http.get("/metrics").text
            for name in GAUGES:
                seen[name] = max(seen[name], value(text, name))
            labels = lora_labels(text)
            running_adapters |= {a for a in labels["running_lora_adapters"].split(",") if a}
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert seen["vllm:num_requests_running"] >= 1, seen
        assert seen["vllm:num_requests_waiting"] >= 1, seen  # more requests than --max-num-seqs
        assert seen["vllm:kv_cache_usage_perc"] > 0, seen
        assert ADAPTER in running_adapters
        # Idle again: nothing left queued or running.
        idle = http.get("/metrics").text
        assert value(idle, "vllm:num_requests_running") == 0
        assert value(idle, "vllm:num_requests_waiting") == 0
