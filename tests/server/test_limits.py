"""Admission control: N requests at once, M waiting, 429 with Retry-After beyond that."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelplane.server.errors import RateLimited
from modelplane.server.limits import ConcurrencyLimiter, KeyRateLimiter
from tests.server.server_harness import RunningServer, metric_value, start_server


async def test_requests_beyond_the_limit_wait_in_fifo_order() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=1, max_queued=2)
    await limiter.acquire()
    order: list[str] = []

    async def waiter(name: str) -> None:
        async with limiter.slot():
            order.append(name)

    tasks = [asyncio.create_task(waiter("first")), asyncio.create_task(waiter("second"))]
    await asyncio.sleep(0)
    assert (limiter.active, limiter.queued) == (1, 2)
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["first", "second"]
    assert (limiter.active, limiter.queued) == (0, 0)


async def test_full_queue_raises_rate_limited_with_retry_after() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=2, max_queued=1)
    await limiter.acquire()
    await limiter.acquire()
    queued = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire()
    assert caught.value.status_code == 429
    assert caught.value.headers() == {"Retry-After": "1"}
    queued.cancel()


async def test_zero_queue_refuses_at_once_when_busy() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=1, max_queued=0)
    await limiter.acquire()
    with pytest.raises(RateLimited):
        await limiter.acquire()


async def test_cancelled_waiter_leaves_the_queue_and_frees_nothing() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=1, max_queued=1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (limiter.active, limiter.queued) == (1, 0)
    limiter.release()
    assert limiter.active == 0


async def test_zero_max_concurrent_means_no_limit() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=0, max_queued=0)
    for _ in range(100):
        await limiter.acquire()
    assert limiter.active == 100


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_per_key_then_429_until_refilled() -> None:
    clock = FakeClock()
    limits = KeyRateLimiter(requests_per_minute=2, tokens_per_minute=None, clock=clock)
    limits.admit("alice")
    limits.admit("alice")
    limits.admit("bob")  # keys have separate budgets
    with pytest.raises(RateLimited) as caught:
        limits.admit("alice")
    assert caught.value.retry_after == 30
    assert "alice" in caught.value.message
    clock.now += 30
    limits.admit("alice")


def test_tokens_per_minute_are_charged_after_the_request() -> None:
    clock = FakeClock()
    limits = KeyRateLimiter(requests_per_minute=None, tokens_per_minute=600, clock=clock)
    limits.admit("alice")
    limits.charge("alice", 650)
    with pytest.raises(RateLimited) as caught:
        limits.admit("alice")
    assert caught.value.retry_after == 6  # 51 tokens missing at 10 tokens/s
    clock.now += 6
    limits.admit("alice")


def test_rate_limits_off_by_default() -> None:
    assert not KeyRateLimiter(None, None).enabled


# --- end to end: a server with one slot and one queue place ----------------------------------


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Configured through MODELPLANE_* env vars, as the operator configures pods."""
    workdir = Path(tmp_path_factory.mktemp("tiny-server"))
    key_file = workdir / "keys"
    key_file.write_text(
        "ci:sk-ci-tiny\nmeter:sk-meter-tiny\nnarrow:sk-narrow-tiny models=tiny-alias\n"
        "refused:sk-refused-tiny\n"
    )
    running = start_server(
        workdir,
        ["--max-concurrent-requests", "1", "--max-queued-requests", "1", "--max-model-len", "1024"],
        env={
            "MODELPLANE_API_KEY_FILE": str(key_file),
            "MODELPLANE_SERVED_MODEL_NAME": "smollm2-135m-instruct tiny-alias",
            "MODELPLANE_RATE_LIMIT_REQUESTS_PER_MINUTE": "6",
            "MODELPLANE_RATE_LIMIT_TOKENS_PER_MINUTE": "6000",
            "MODELPLANE_LOG_FORMAT": "json",
        },
    )
    running.keys = {
        "ci": "sk-ci-tiny",
        "meter": "sk-meter-tiny",
        "narrow": "sk-narrow-tiny",
        "refused": "sk-refused-tiny",
    }
    try:
        yield running
    finally:
        running.stop()


LONG_STREAM = {
    "model": "smollm2-135m-instruct",
    "prompt": "Once upon a time",
    # Most of the context (1024), so that only closing it ends it within the test, however
    # fast the machine: an unread stream does not wait for its client, whose loopback socket
    # buffers took 851 KB of frames here.
    "max_tokens": 1000,
    "ignore_eos": True,
    "stream": True,
}


async def wait_for_in_flight(
    http: httpx.AsyncClient,
    expected: float,
    timeout: float = 120,
    explain: Callable[[], str] = str,
) -> None:
    """Scrapes until the in-flight figure is `expected`; if never, what it was and when.

    Bounded generously: CI machines have run this suite at a third of this machine's speed.
    """
    start = time.monotonic()
    changes: list[tuple[float, float]] = []  # (seconds since start, figure) at each change
    scrapes = 0
    while time.monotonic() - start < timeout:
        scrape = await http.get("/metrics")
        assert scrape.status_code == 200, f"/metrics answered {scrape.status_code}: {scrape.text}"
        figure = metric_value(scrape.text, "modelplane_requests_in_flight")
        scrapes += 1
        if figure == expected:
            return
        if not changes or changes[-1][1] != figure:
            changes.append((round(time.monotonic() - start, 2), figure))
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"modelplane_requests_in_flight never reached {expected} in {scrapes} scrapes over "
        f"{timeout} s; it changed (s, figure): {changes}\n{explain()}"
    )


def outcome(task: asyncio.Task[httpx.Response]) -> str:
    """A request task's state, for a failure message."""
    if not task.done():
        return "still waiting"
    if task.cancelled():
        return "cancelled"
    if task.exception():
        return repr(task.exception())
    return f"{task.result().status_code} {task.result().text[:500]}"


@pytest.mark.slow
async def test_full_queue_is_429_with_retry_after_in_openai_shape(
    tiny_server: RunningServer,
) -> None:
    headers = {"Authorization": "Bearer sk-ci-tiny"}
    async with httpx.AsyncClient(
        base_url=tiny_server.base_url, headers=headers, timeout=120
    ) as http:
        # The one slot: a long stream, holding it until we close it.
        async with http.stream("POST", "/v1/completions", json=LONG_STREAM) as running:
            assert running.status_code == 200
            chunks = running.aiter_bytes()  # kept referenced: a dropped iterator closes the stream
            await anext(chunks)
            # The one queue place.
            queued = asyncio.create_task(
                http.post(
                    "/v1/completions",
                    json={"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 2},
                )
            )
            await wait_for_in_flight(
                http,
                2,
                # The server's log, then the queued request's fate: last, where CI shows it.
                explain=lambda: (
                    f"{tiny_server.log_text()[-3000:]}\nthe queued request: {outcome(queued)}"
                ),
            )
            refused = await http.post(
                "/v1/completions",
                json={"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 2},
            )
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["x-request-id"]
            error = refused.json()["error"]
            assert error["type"] == "rate_limit_error"
            assert error["code"] == "rate_limit_exceeded"
            assert set(error) == {"message", "type", "param", "code"}
        # Closing the stream frees the slot for the queued request.
        served = await queued
        assert served.status_code == 200
        assert served.json()["usage"]["completion_tokens"] == 2
        await wait_for_in_flight(http, 0)


@pytest.mark.slow
def test_key_over_its_requests_per_minute_gets_429(tiny_server: RunningServer) -> None:
    """Runs after the queue test, which used 3 of the key's 6 requests per minute."""
    headers = {"Authorization": "Bearer sk-ci-tiny"}
    body = {"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 1}
    with httpx.Client(base_url=tiny_server.base_url, headers=headers, timeout=120) as http:
        statuses = []
        for _ in range(8):
            response = http.post("/v1/completions", json=body)
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-ratelimit-limit-requests"] == "6"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert 0 < duration_s(response.headers["x-ratelimit-reset-requests"]) <= 60
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert "requests per minute" in error["message"]
        usage = tiny_server.usage_line(response.headers["x-request-id"])
        assert (usage["status"], usage["key_name"]) == (429, "ci")


GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:(\d+)ms)?$")


def duration_s(text: str) -> float:
    """A Go-style duration (`6m0s`, `1.5s`, `120ms`), as OpenAI's reset headers carry it."""
    match = GO_DURATION.match(text)
    assert match and text, f"not a Go duration: {text!r}"
    hours, minutes, seconds, millis = (float(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


@pytest.mark.slow
def test_every_api_response_carries_openais_rate_limit_headers(
    tiny_server: RunningServer,
) -> None:
    headers = {"Authorization": "Bearer sk-meter-tiny"}
    # ~600 prompt tokens, charged to the key when the request finishes.
    body = {"model": "smollm2-135m-instruct", "prompt": "one two three " * 200, "max_tokens": 1}
    with httpx.Client(base_url=tiny_server.base_url, headers=headers, timeout=120) as http:
        served = http.post("/v1/completions", json=body)
        assert served.status_code == 200, served.text
        charged = served.json()["usage"]["total_tokens"]
        assert charged > 500
        listed = http.get("/v1/models")
    # The request budget refills at 6 a minute while the request runs: what remains and the
    # time to full agree (the first request of the key took one).
    assert served.headers["x-ratelimit-limit-requests"] == "6"
    remaining = int(served.headers["x-ratelimit-remaining-requests"])
    reset = duration_s(served.headers["x-ratelimit-reset-requests"])
    assert (remaining, reset > 0) in ((5, True), (6, False))
    assert reset <= 10
    assert served.headers["x-ratelimit-limit-tokens"] == "6000"
    assert served.headers["x-ratelimit-remaining-tokens"] == "6000"  # charged after the response
    assert served.headers["x-ratelimit-reset-tokens"] == "0s"
    # The next response sees the charge, refilling at 100 tokens/s.
    assert listed.status_code == 200
    remaining_tokens = int(listed.headers["x-ratelimit-remaining-tokens"])
    reset_tokens = duration_s(listed.headers["x-ratelimit-reset-tokens"])
    assert 6000 - charged <= remaining_tokens < 6000
    assert abs(remaining_tokens + reset_tokens * 100 - 6000) <= 1
    usage = tiny_server.usage_line(served.headers["x-request-id"])
    assert (usage["key_name"], usage["prompt_tokens"]) == ("meter", charged - 1)
    # Without a key there is no budget to report: the 401 carries none.
    refused = httpx.get(f"{tiny_server.base_url}/v1/models")
    assert refused.status_code == 401
    assert not any(name.startswith("x-ratelimit") for name in refused.headers)


@pytest.mark.slow
def test_a_key_restricted_to_some_models_gets_403_naming_any_other(
    tiny_server: RunningServer,
) -> None:
    headers = {"Authorization": "Bearer sk-narrow-tiny"}
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    with httpx.Client(base_url=tiny_server.base_url, headers=headers, timeout=120) as http:
        refused = http.post("/v1/chat/completions", json={**chat, "model": "smollm2-135m-instruct"})
        allowed = http.post("/v1/chat/completions", json={**chat, "model": "tiny-alias"})
        listed = http.get("/v1/models").json()
        retrieved = http.get("/v1/models/smollm2-135m-instruct")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_allowed",
        "model",
    )
    assert "`smollm2-135m-instruct`" in error["message"]
    assert refused.headers["x-ratelimit-limit-requests"] == "6"
    assert allowed.status_code == 200, allowed.text
    assert [model["id"] for model in listed["data"]] == ["tiny-alias"]
    assert retrieved.status_code == 403
    usage = tiny_server.usage_line(refused.headers["x-request-id"])
    assert (usage["status"], usage["key_name"], usage["prompt_tokens"]) == (403, "narrow", 0)
    assert tiny_server.usage_line(allowed.headers["x-request-id"])["key_name"] == "narrow"


@pytest.mark.slow
def test_a_refused_request_costs_the_key_no_tokens(tiny_server: RunningServer) -> None:
    """A prompt longer than the context (1024 tokens here) is tokenized to be refused, but
    only what was served is charged: the key's token budget stays full."""
    headers = {"Authorization": "Bearer sk-refused-tiny"}
    body = {"model": "smollm2-135m-instruct", "prompt": "one two three " * 1000, "max_tokens": 1}
    with httpx.Client(base_url=tiny_server.base_url, headers=headers, timeout=120) as http:
        refused = http.post("/v1/completions", json=body)
        after = http.get("/v1/models")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert after.headers["x-ratelimit-remaining-tokens"] == "6000"
    assert after.headers["x-ratelimit-reset-tokens"] == "0s"
