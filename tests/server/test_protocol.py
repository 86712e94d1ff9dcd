"""Request models: every OpenAI field is accepted; bad values fail on the named field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelplane.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    NamedToolChoice,
    TextContentPart,
)

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def failing_field(model: type[Any], body: dict[str, Any]) -> tuple[Any, ...]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return tuple(raised.value.errors()[0]["loc"])


def test_every_openai_and_vllm_request_field_is_accepted() -> None:
    request = chat(
        temperature=0.5,
        top_p=0.9,
        n=2,
        max_tokens=10,
        max_completion_tokens=20,
        stop="x",
        seed=1,
        presence_penalty=1,
        frequency_penalty=1,
        logit_bias={"1": 1},
        logprobs=True,
        top_logprobs=2,
        response_format={"type": "json_object"},
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "f"}},
        stream=True,
        stream_options={"include_usage": True},
        user="u",
        top_k=5,
        min_p=0.1,
        repetition_penalty=1.2,
        ignore_eos=True,
        min_tokens=1,
        unknown_extension="ignored",
    )
    assert request.effective_max_tokens == 20
    assert request.stop_list == ["x"]
    assert request.include_usage_in_stream
    assert isinstance(request.effective_tool_choice, NamedToolChoice)


def test_content_part_arrays_are_accepted() -> None:
    request = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}])
    content = request.messages[0].content
    assert isinstance(content, list)
    assert isinstance(content[0], TextContentPart)


def test_tool_choice_defaults_to_auto_with_tools_and_none_without() -> None:
    assert chat(tools=[TOOL]).effective_tool_choice == "auto"
    assert chat().effective_tool_choice == "none"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream_interval": 0}, "stream_interval"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ],
)
def test_invalid_chat_field_is_reported_on_that_field(fields: dict[str, Any], field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    assert failing_field(ChatCompletionRequest, body)[0] == field


def test_missing_model_is_reported_on_model() -> None:
    assert failing_field(ChatCompletionRequest, {"messages": []})[0] in {"model", "messages"}
    assert failing_field(CompletionRequest, {"prompt": "x"}) == ("model",)


def test_completion_prompt_shapes() -> None:
    for prompt in ("a", ["a", "b"], [1, 2], [[1], [2, 3]]):
        assert CompletionRequest(model="m", prompt=prompt).prompt == prompt
    assert failing_field(CompletionRequest, {"model": "m", "prompt": []}) == ("prompt",)
    assert failing_field(CompletionRequest, {"model": "m", "prompt": "x", "suffix": "y"}) == (
        "suffix",
    )
    body = {"model": "m", "prompt": "x", "n": 2, "best_of": 3}
    assert failing_field(CompletionRequest, body) == ("best_of",)


def test_completion_max_tokens_defaults_to_16_like_openai() -> None:
    assert CompletionRequest(model="m", prompt="x").effective_max_tokens == 16


def test_embedding_request_shapes() -> None:
    assert EmbeddingRequest(model="m", input=["a", "b"]).encoding_format == "float"
    assert failing_field(EmbeddingRequest, {"model": "m", "input": []}) == ("input",)
    body = {"model": "m", "input": "a", "encoding_format": "hex"}
    assert failing_field(EmbeddingRequest, body) == ("encoding_format",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", "4"), ("stream", "yes"), ("temperature", "0.5"), ("n", 2.5), ("seed", "1")],
)
def test_numbers_and_booleans_are_not_coerced_from_strings(field: str, value: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}
    assert failing_field(ChatCompletionRequest, body)[0] == field


def test_null_where_the_spec_allows_it_means_the_default() -> None:
    request = chat(stream=None, logprobs=None)
    assert (request.stream, request.logprobs) == (False, False)
    completion = CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "stream": None, "echo": None}
    )
    assert (completion.stream, completion.echo) == (False, False)


def test_an_empty_array_of_content_parts_is_rejected() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": []}]}
    assert failing_field(ChatCompletionRequest, body) == ("messages", 0, "content")


def test_a_text_part_without_text_says_text_is_missing() -> None:
    from modelplane.server.endpoint import parse_request
    from modelplane.server.errors import InvalidRequest

    body = b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}'
    with pytest.raises(InvalidRequest) as raised:
        parse_request(body, ChatCompletionRequest)
    assert raised.value.param == "messages[0].content"
    assert "missing 'text'" in raised.value.message
    assert "not supported" not in raised.value.message


@pytest.mark.parametrize("tool_choice", [None, "auto", "none", "required"])
def test_tool_parameters_must_be_a_json_schema_whatever_the_tool_choice(
    tool_choice: str | None,
) -> None:
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [bad_tool],
        "tool_choice": tool_choice,
    }
    assert failing_field(ChatCompletionRequest, body) == ("tools", 0, "function", "parameters")


def test_response_format_schema_must_be_a_json_schema() -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 1}}}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    loc = failing_field(ChatCompletionRequest, {**body, "response_format": response_format})
    assert loc[0] == "response_format"
