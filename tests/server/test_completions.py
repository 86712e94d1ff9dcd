"""`/v1/completions` against the real engine through the official openai SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
PROMPT = "The capital of France is"


def test_completion_in_openai_shape(client: openai.OpenAI) -> None:
    response = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert response.id.startswith("cmpl-")
    assert response.object == "text_completion"
    assert response.model == MODEL
    (choice,) = response.choices
    assert "Paris" in choice.text
    assert choice.index == 0
    assert choice.finish_reason in {"stop", "length"}
    assert response.usage is not None
    assert response.usage.completion_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_default_max_tokens_is_16(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt="Once upon a time", temperature=0, extra_body={"ignore_eos": True}
    )
    assert response.usage is not None
    assert response.usage.completion_tokens == 16
    assert response.choices[0].finish_reason == "length"


def test_stream_text_equals_non_stream_text_at_temperature_0(client: openai.OpenAI) -> None:
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=30, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=30,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert full.usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.object == "text_completion" and c.id.startswith("cmpl-") for c in chunks)


def test_prompt_lists_give_n_choices_per_prompt(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt=["One, two,", "Red, green,"], max_tokens=4, temperature=0.8, n=2
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2, 3]
    assert response.usage is not None
    assert response.usage.completion_tokens <= 16


def test_token_id_prompts_are_accepted(client: openai.OpenAI) -> None:
    text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0)
    tokens = client.completions.create(
        model=MODEL, prompt=[504, 3575, 282, 4649, 314], max_tokens=5, temperature=0
    )
    assert tokens.usage is not None
    assert tokens.usage.prompt_tokens == 5
    assert text.choices[0].text


def test_echo_prepends_the_prompt(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True
    )
    assert response.choices[0].text.startswith(PROMPT)


def test_logprobs_have_openai_completions_shape(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2
    )
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None
    assert logprobs.tokens is not None
    assert logprobs.token_logprobs is not None
    assert logprobs.top_logprobs is not None
    assert logprobs.text_offset is not None
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True):
        assert 2 <= len(top) <= 3
        assert max(top, key=lambda t: top[t]) == token


def test_stop_sequence(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=20, temperature=0, stop=[" Paris"]
    )
    assert "Paris" not in response.choices[0].text
    assert response.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def sample() -> str:
        response = client.completions.create(
            model=MODEL, prompt="My favourite colour is", max_tokens=15, temperature=1, seed=99
        )
        return response.choices[0].text

    assert sample() == sample()


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt=PROMPT, max_tokens=2)


def test_prompt_longer_than_the_context_is_400(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "hello " * 10000, "max_tokens": 1}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "prompt"


def test_out_of_vocabulary_token_is_400(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": [10**9], "max_tokens": 1}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400
