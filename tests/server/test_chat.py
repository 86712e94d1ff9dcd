"""`/v1/chat/completions` against the real engine through the official openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_answers_in_openai_shape(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=30
    )
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == MODEL
    assert response.created > 0
    (choice,) = response.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_content_part_arrays_are_read_as_text(client: openai.OpenAI) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is the capital of France?"}],
        }
    ]
    response = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=30
    )
    assert "Paris" in (response.choices[0].message.content or "")


def test_image_content_part_is_400_naming_the_message(http: httpx.Client) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = {"model": MODEL, "messages": [{"role": "user", "content": [image]}]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content"


def test_stream_text_equals_non_stream_text_at_temperature_0(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me a short story about a cat."}]
    full = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=60
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=60, stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == full.choices[0].finish_reason
    assert all(reason is None for reason in finishes[:-1])


def test_request_stream_interval_batches_tokens_per_chunk(client: openai.OpenAI) -> None:
    """vLLM's per-request `stream_interval`: this server streams token by token, this request
    asks for chunks of up to five tokens, and the text is the same."""
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a short story about a cat."}],
        "temperature": 0,
        "max_tokens": 30,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    one = list(client.chat.completions.create(**ask))
    five = list(client.chat.completions.create(**ask, extra_body={"stream_interval": 5}))

    def content(chunks: list[Any]) -> list[str]:
        return [
            c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
        ]

    assert "".join(content(five)) == "".join(content(one))
    assert five[-1].usage.completion_tokens == one[-1].usage.completion_tokens == 30
    assert len(content(five)) <= 30 / 5 + 1 < len(content(one))
    assert [c.choices[0].finish_reason for c in five if c.choices][-1] == "length"


def test_usage_chunk_comes_last_with_empty_choices(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=FRANCE,
            temperature=0,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    content_tokens = last.usage.completion_tokens
    assert content_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + content_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_sse_frames_end_with_done(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": FRANCE, "max_tokens": 5, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    frames = [frame for frame in raw.split("\n\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames)
    assert frames[-1] == "data: [DONE]"
    first = orjson.loads(frames[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def sample() -> str:
        response = client.chat.completions.create(
            model=MODEL, messages=FRANCE, temperature=1.0, seed=1234, max_tokens=25
        )
        return response.choices[0].message.content or ""

    assert sample() == sample()


def test_n_returns_n_indexed_choices(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=1.0, n=3, seed=7, max_tokens=10
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2]
    assert all(choice.message.content for choice in response.choices)
    assert response.usage is not None
    assert response.usage.completion_tokens <= 30


def test_n_streams_every_choice(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=FRANCE, temperature=1.0, n=2, max_tokens=8, stream=True
        )
    )
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=30, stop=["Paris"]
    )
    choice = response.choices[0]
    assert "Paris" not in (choice.message.content or "")
    assert choice.finish_reason == "stop"


def test_max_tokens_cuts_with_finish_reason_length(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Write a long essay about the sea."}]
    response = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_completion_tokens=5
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 5


def test_logprobs_have_openai_chat_shape(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
    )
    choice = response.choices[0]
    assert choice.logprobs is not None
    content = choice.logprobs.content or []
    # The EOS token counts in usage but, absent from the text, not in logprobs.
    assert 0 < len(content) <= response.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(entry.token for entry in content) == choice.message.content
    for entry in content:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3
        # Greedy decoding picks the most likely token.
        assert entry.top_logprobs[0].token == entry.token
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True)


def test_streamed_logprobs_follow_the_tokens(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=FRANCE,
            temperature=0,
            max_tokens=8,
            logprobs=True,
            top_logprobs=1,
            stream=True,
        )
    )
    entries = [
        entry
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert entries
    assert "".join(entry.token for entry in entries) == text


def test_unknown_model_is_404_in_openai_error_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"


def test_prompt_longer_than_the_context_is_400(http: httpx.Client) -> None:
    long_text = "hello " * 10000  # more tokens than the model's 8192-token context
    body = {"model": MODEL, "messages": [{"role": "user", "content": long_text}]}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"


def test_max_tokens_past_the_context_is_400(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": FRANCE, "max_tokens": 10**6}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_tokens"


def test_invalid_parameter_is_400_naming_it(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": FRANCE, "temperature": 5}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"


def test_greedy_with_n_above_1_is_400_not_500(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": FRANCE, "temperature": 0, "n": 2}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_vllm_extra_sampling_fields_are_accepted(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        temperature=0.5,
        max_tokens=10,
        extra_body={
            "top_k": 20,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "min_tokens": 10,
            "ignore_eos": True,
        },
    )
    assert response.usage is not None
    assert response.usage.completion_tokens == 10


def test_request_is_recorded_in_the_usage_line(http: httpx.Client, server: Any) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": FRANCE, "max_tokens": 5, "temperature": 0},
        headers={"x-request-id": "gen-usage-check-1"},
    )
    assert response.status_code == 200
    usage = response.json()["usage"]
    line = server.usage_line("gen-usage-check-1")
    assert line["model"] == MODEL
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
