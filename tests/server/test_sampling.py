"""Request -> vLLM SamplingParams: defaults, precedence, structured outputs, tool constraints."""

from __future__ import annotations

import pytest
from vllm.sampling_params import RequestOutputKind

from modelplane.server.errors import ContextLengthExceeded, InvalidRequest
from modelplane.server.protocol import ChatCompletionRequest, CompletionRequest
from modelplane.server.sampling import (
    chat_sampling_params,
    completion_sampling_params,
    resolve_max_tokens,
)

MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": MESSAGES, **fields})


def test_openai_defaults_apply_when_neither_request_nor_model_sets_a_knob() -> None:
    params = chat_sampling_params(chat(), max_tokens=10, model_defaults={})
    assert params.temperature == 1.0
    assert params.top_p == 1.0
    assert params.n == 1
    assert params.max_tokens == 10
    assert params.output_kind == RequestOutputKind.FINAL_ONLY
    assert params.structured_outputs is None
    assert params.logprobs is None


def test_model_generation_config_beats_openai_default_but_not_the_request() -> None:
    defaults = {"temperature": 0.3, "top_k": 20}
    assert chat_sampling_params(chat(), max_tokens=5, model_defaults=defaults).temperature == 0.3
    request = chat(temperature=0.9)
    params = chat_sampling_params(request, max_tokens=5, model_defaults=defaults)
    assert params.temperature == 0.9
    assert params.top_k == 20


def test_every_sampling_field_reaches_sampling_params() -> None:
    request = chat(
        temperature=0.7,
        top_p=0.9,
        n=2,
        stop=["END", "STOP"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"42": 5.0},
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        ignore_eos=True,
        min_tokens=3,
        stop_token_ids=[7],
        stream_interval=4,
        stream=True,
    )
    params = chat_sampling_params(request, max_tokens=50, model_defaults={})
    assert (params.temperature, params.top_p, params.n) == (0.7, 0.9, 2)
    assert params.stop == ["END", "STOP"]
    assert params.seed == 42
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert params.logit_bias == {42: 5.0}
    assert (params.top_k, params.min_p, params.repetition_penalty) == (40, 0.05, 1.1)
    assert params.ignore_eos is True
    assert params.min_tokens == 3
    assert params.stream_interval == 4
    assert 7 in params.stop_token_ids
    assert params.output_kind == RequestOutputKind.DELTA


def test_chat_logprobs_map_to_top_logprobs_count() -> None:
    assert chat_sampling_params(chat(logprobs=True), max_tokens=5, model_defaults={}).logprobs == 0
    request = chat(logprobs=True, top_logprobs=3)
    assert chat_sampling_params(request, max_tokens=5, model_defaults={}).logprobs == 3


def test_completion_logprobs_pass_through() -> None:
    request = CompletionRequest(model="m", prompt="x", logprobs=2)
    assert completion_sampling_params(request, max_tokens=5, model_defaults={}).logprobs == 2


def test_json_object_and_json_schema_become_structured_outputs() -> None:
    params = chat_sampling_params(
        chat(response_format={"type": "json_object"}), max_tokens=5, model_defaults={}
    )
    assert params.structured_outputs is not None
    assert params.structured_outputs.json_object is True
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = chat(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    params = chat_sampling_params(request, max_tokens=5, model_defaults={})
    assert params.structured_outputs is not None
    assert params.structured_outputs.json == schema


def test_text_response_format_is_unconstrained() -> None:
    params = chat_sampling_params(
        chat(response_format={"type": "text"}), max_tokens=5, model_defaults={}
    )
    assert params.structured_outputs is None


def test_tool_choice_required_constrains_to_an_array_of_known_calls() -> None:
    request = chat(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)
    params = chat_sampling_params(request, max_tokens=5, model_defaults={})
    assert params.structured_outputs is not None
    schema = params.structured_outputs.json
    assert isinstance(schema, dict)
    assert schema["type"] == "array"
    assert schema["minItems"] == 1
    assert schema["maxItems"] == 1
    (variant,) = schema["items"]["anyOf"]
    assert variant["properties"]["name"]["enum"] == ["get_weather"]
    assert variant["properties"]["parameters"] == WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]


def test_named_tool_choice_constrains_to_that_functions_parameters() -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    params = chat_sampling_params(
        chat(tools=[WEATHER_TOOL], tool_choice=choice), max_tokens=5, model_defaults={}
    )
    assert params.structured_outputs is not None
    assert params.structured_outputs.json == WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]


def test_tool_choice_auto_and_none_are_unconstrained() -> None:
    for choice in ("auto", "none", None):
        request = chat(tools=[WEATHER_TOOL], tool_choice=choice)
        assert (
            chat_sampling_params(request, max_tokens=5, model_defaults={}).structured_outputs
            is None
        )


def test_vllm_rejection_of_a_combination_is_a_400() -> None:
    # vLLM refuses n > 1 with greedy sampling.
    with pytest.raises(InvalidRequest):
        chat_sampling_params(chat(temperature=0, n=2), max_tokens=5, model_defaults={})


def test_max_tokens_defaults_to_the_room_left_in_the_context() -> None:
    assert resolve_max_tokens(None, 100, 2048, prompt_param="messages") == 1948
    assert resolve_max_tokens(50, 100, 2048, prompt_param="messages") == 50


def test_prompt_filling_the_context_is_context_length_exceeded() -> None:
    with pytest.raises(ContextLengthExceeded) as raised:
        resolve_max_tokens(None, 2048, 2048, prompt_param="prompt")
    assert raised.value.status_code == 400
    assert raised.value.param == "prompt"
    assert raised.value.body()["error"]["code"] == "context_length_exceeded"


def test_max_tokens_beyond_the_context_is_context_length_exceeded() -> None:
    with pytest.raises(ContextLengthExceeded) as raised:
        resolve_max_tokens(2000, 100, 2048, prompt_param="messages")
    assert raised.value.param == "max_tokens"
