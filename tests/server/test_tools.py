"""Function calling for any model: `required` and named tool_choice by constrained decoding."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": WEATHER_PARAMETERS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Get the current time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    },
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}  # type: ignore[index]
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def assert_valid_calls(calls: list) -> None:  # type: ignore[type-arg]
    assert calls
    for call in calls:
        assert call.type == "function"
        assert call.id.startswith("call_")
        assert call.function.name in SCHEMAS
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_choice_required_produces_a_valid_call(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=100,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert_valid_calls(calls)


def test_tool_choice_required_with_parallel_calls_returns_only_valid_calls(
    client: openai.OpenAI,
) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    # A small model may repeat calls until max_tokens: the complete ones are returned.
    choice = response.choices[0]
    assert_valid_calls(choice.message.tool_calls or [])
    assert choice.finish_reason in {"tool_calls", "length"}


def test_named_tool_choice_calls_that_function(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=100,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [call.function.name for call in calls] == ["get_weather"]
    assert_valid_calls(calls)


def test_named_tool_choice_streams_call_deltas(client: openai.OpenAI) -> None:
    kwargs = {
        "model": MODEL,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "temperature": 0,
        "max_tokens": 100,
    }
    full = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(client.chat.completions.create(stream=True, **kwargs))  # type: ignore[call-overload]
    deltas = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert deltas[0].id and deltas[0].function.name == "get_time"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert arguments == full.choices[0].message.tool_calls[0].function.arguments
    jsonschema.validate(json.loads(arguments), SCHEMAS["get_time"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_tool_call_streams_as_one_complete_delta(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=100,
            stream=True,
        )
    )
    calls = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert len(calls) == 1
    assert calls[0].index == 0
    assert calls[0].function.name in SCHEMAS
    jsonschema.validate(json.loads(calls[0].function.arguments), SCHEMAS[calls[0].function.name])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        tools=TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=30,
    )
    choice = response.choices[0]
    assert choice.message.tool_calls is None
    assert "Paris" in (choice.message.content or "")


def test_tool_choice_auto_answers_with_text_or_valid_calls(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, temperature=0, max_tokens=60
    )
    choice = response.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        assert_valid_calls(choice.message.tool_calls)
    else:
        assert choice.message.content


def test_a_tool_result_conversation_is_accepted(client: openai.OpenAI) -> None:
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 degrees Celsius."},
    ]
    response = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        temperature=0,
        max_tokens=40,  # type: ignore[arg-type]
    )
    assert response.choices[0].message.content or response.choices[0].message.tool_calls


def test_named_tool_choice_for_an_unknown_function_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "launch_rocket"}},
        )
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == "tool_choice"
