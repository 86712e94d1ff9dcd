"""Per-key budgets as OpenAI's x-ratelimit-* headers; keys restricted to some models."""

from __future__ import annotations

import pytest

from modelplane.server import cli
from modelplane.server.auth import ApiKeyAuth, authorize_model
from modelplane.server.errors import ModelNotAllowed
from modelplane.server.limits import KeyRateLimiter
from modelplane.server.rate_limit_headers import go_duration, rate_limit_headers
from modelplane.server.settings import ApiKey, parse_api_key_lines


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "0s"),
        (0.12, "120ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (17.5, "17.5s"),
        (360, "6m0s"),
        (65.25, "1m5.25s"),
        (3600, "1h0m0s"),
    ],
)
def test_reset_durations_read_like_openais(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_headers_report_limit_remaining_and_time_to_full_per_key() -> None:
    clock = FakeClock()
    limits = KeyRateLimiter(requests_per_minute=60, tokens_per_minute=6000, clock=clock)
    limits.admit("alice")
    limits.charge("alice", 650)
    headers = dict(rate_limit_headers(limits, "alice"))
    assert headers == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"59",
        b"x-ratelimit-reset-requests": b"1s",
        b"x-ratelimit-limit-tokens": b"6000",
        b"x-ratelimit-remaining-tokens": b"5350",
        b"x-ratelimit-reset-tokens": b"6.5s",
    }
    assert dict(rate_limit_headers(limits, "bob"))[b"x-ratelimit-remaining-requests"] == b"60"
    clock.now += 3
    headers = dict(rate_limit_headers(limits, "alice"))
    assert headers[b"x-ratelimit-remaining-tokens"] == b"5650"
    assert headers[b"x-ratelimit-reset-tokens"] == b"3.5s"


def test_an_overdrawn_token_budget_reports_zero_remaining() -> None:
    clock = FakeClock()
    limits = KeyRateLimiter(requests_per_minute=None, tokens_per_minute=600, clock=clock)
    limits.charge("alice", 900)
    headers = dict(rate_limit_headers(limits, "alice"))
    assert headers == {
        b"x-ratelimit-limit-tokens": b"600",
        b"x-ratelimit-remaining-tokens": b"0",
        b"x-ratelimit-reset-tokens": b"1m30s",
    }


def test_key_lines_may_restrict_a_key_to_models() -> None:
    keys = parse_api_key_lines(
        "alice:sk-a models=qwen3-8b,llama\n"
        "bob : sk-b\n"
        "sk-bare models=qwen3-8b\n"
        "carol:sk-c models=a models=b\n",
        source="keys",
    )
    assert keys == [
        ApiKey("alice", "sk-a", frozenset({"qwen3-8b", "llama"})),
        ApiKey("bob", "sk-b", None),
        ApiKey("keys:3", "sk-bare", frozenset({"qwen3-8b"})),
        ApiKey("carol", "sk-c", frozenset({"a", "b"})),
    ]
    with pytest.raises(ValueError, match="keys:1: models= needs"):
        parse_api_key_lines("alice:sk-a models=\n", source="keys")


def test_inline_keys_take_the_same_options() -> None:
    keys = cli.load_api_keys(["ci:sk-ci models=m1", "sk-2"], None)
    assert keys == [ApiKey("ci", "sk-ci", frozenset({"m1"})), ApiKey("key-2", "sk-2")]
    with pytest.raises(ValueError):
        cli.load_api_keys(["models=m1"], None)


def test_a_restricted_key_is_403_for_other_models_naming_the_model() -> None:
    auth = ApiKeyAuth([ApiKey("alice", "sk-a", frozenset({"qwen"})), ApiKey("bob", "sk-b")])
    assert auth.allowed_models(auth.authenticate(b"Bearer sk-a")) == {"qwen"}
    assert auth.allowed_models(auth.authenticate(b"Bearer sk-b")) is None
    authorize_model(frozenset({"qwen"}), "qwen", "alice")
    authorize_model(None, "anything", "bob")
    with pytest.raises(ModelNotAllowed) as caught:
        authorize_model(frozenset({"qwen"}), "llama", "alice")
    error = caught.value.body()["error"]
    assert caught.value.status_code == 403
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    assert "`llama`" in error["message"] and "alice" in error["message"]
