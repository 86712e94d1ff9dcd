"""`response_format`: json_object and json_schema through vLLM's structured outputs."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def test_json_schema_output_is_valid_against_the_schema(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Which city is the capital of France?"}],
        temperature=0,
        max_tokens=100,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": CITY_SCHEMA, "strict": True},
        },
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    value = json.loads(choice.message.content or "")
    jsonschema.validate(value, CITY_SCHEMA)


def test_json_schema_streamed_output_is_the_same_json(client: openai.OpenAI) -> None:
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Which city is the capital of Italy?"}],
        "temperature": 0,
        "max_tokens": 100,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": CITY_SCHEMA},
        },
    }
    full = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == full.choices[0].message.content
    jsonschema.validate(json.loads(streamed), CITY_SCHEMA)


def test_json_object_output_parses_as_an_object(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": 'Reply with a JSON object like {"answer": "..."}: what is 2 + 2?',
            }
        ],
        temperature=0,
        max_tokens=200,
        response_format={"type": "json_object"},
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content or ""), dict)


def test_completions_accept_response_format_too(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=MODEL,
        prompt="The capital of France as JSON:",
        temperature=0,
        max_tokens=100,
        extra_body={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "capital", "schema": CITY_SCHEMA},
            }
        },
    )
    jsonschema.validate(json.loads(response.choices[0].text), CITY_SCHEMA)


def test_json_schema_without_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema"},  # type: ignore[typeddict-item]
        )
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == "response_format"
