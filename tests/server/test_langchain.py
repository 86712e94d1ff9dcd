"""LangChain's ChatOpenAI works by changing only base_url and the API key."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def chat_model(server: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL, base_url=server.api_url, api_key=server.key, temperature=0, max_tokens=30
    )


def test_langchain_chat_openai_answers(chat_model: ChatOpenAI) -> None:
    answer = chat_model.invoke("What is the capital of France?")
    assert "Paris" in str(answer.content)


def test_langchain_streaming_matches_invoke(chat_model: ChatOpenAI) -> None:
    question = "What is the capital of France?"
    streamed = "".join(str(chunk.content) for chunk in chat_model.stream(question))
    assert streamed == chat_model.invoke(question).content


def test_langchain_bound_tool_is_called(chat_model: ChatOpenAI) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"Sunny in {city}"

    bound = chat_model.bind_tools([get_weather], tool_choice="get_weather")
    message = bound.invoke("What is the weather in Paris?")
    (call,) = message.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather"
    assert isinstance(call["args"].get("city"), str)
