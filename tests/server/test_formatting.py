"""Response formatting and prompt building as pure functions (no engine)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from vllm.logprobs import Logprob
from vllm.outputs import CompletionOutput

from modelplane.server.chat import (
    build_chat_prompt,
    format_chat_completion,
    message_text,
    template_messages,
)
from modelplane.server.completions import format_completion
from modelplane.server.embeddings import encode_embedding, format_embeddings
from modelplane.server.errors import InvalidRequest
from modelplane.server.logprobs import LogprobFormatter
from modelplane.server.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelplane.server.streaming import DONE_FRAME, ChunkWriter, error_frame
from modelplane.server.tools import (
    ChoiceStream,
    complete_array_items,
    might_be_tool_call,
    parse_auto_tool_calls,
    parse_required_tool_calls,
)

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def output(text: str, index: int = 0, finish: str | None = "stop", **kw: Any) -> CompletionOutput:
    return CompletionOutput(
        index=index,
        text=text,
        token_ids=kw.get("token_ids", [1, 2]),
        cumulative_logprob=None,
        logprobs=kw.get("logprobs"),
        finish_reason=finish,
    )


def test_chat_completion_body_matches_openai() -> None:
    body = format_chat_completion(
        chat(),
        response_id="chatcmpl-1",
        created=123,
        outputs=[output("Hello!", token_ids=[5, 6, 7])],
        prompt_tokens=4,
    )
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 123,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        "system_fingerprint": None,
    }


def test_choices_are_ordered_by_index_and_usage_sums_them() -> None:
    body = format_chat_completion(
        chat(n=2, temperature=1),
        response_id="x",
        created=1,
        outputs=[output("b", index=1), output("a", index=0)],
        prompt_tokens=3,
    )
    assert [c["message"]["content"] for c in body["choices"]] == ["a", "b"]
    assert body["usage"]["completion_tokens"] == 4


def logprobs_for(token_ids: list[int]) -> list[dict[int, Logprob]]:
    """Sampled token with rank 1, one runner-up with rank 2."""
    return [
        {
            tid: Logprob(logprob=-0.1, rank=1, decoded_token=f"t{tid}"),
            tid + 100: Logprob(logprob=-2.5, rank=2, decoded_token=f"t{tid + 100}"),
        }
        for tid in token_ids
    ]


def test_chat_logprobs_shape() -> None:
    body = format_chat_completion(
        chat(logprobs=True, top_logprobs=2),
        response_id="x",
        created=1,
        outputs=[output("t1t2", token_ids=[1, 2], logprobs=logprobs_for([1, 2]))],
        prompt_tokens=1,
    )
    content = body["choices"][0]["logprobs"]["content"]
    assert content[0] == {
        "token": "t1",
        "logprob": -0.1,
        "bytes": [116, 49],
        "top_logprobs": [
            {"token": "t1", "logprob": -0.1, "bytes": [116, 49]},
            {"token": "t101", "logprob": -2.5, "bytes": list(b"t101")},
        ],
    }


def test_chat_logprobs_without_top_logprobs_have_an_empty_top_list() -> None:
    body = format_chat_completion(
        chat(logprobs=True),
        response_id="x",
        created=1,
        outputs=[output("t1", token_ids=[1], logprobs=logprobs_for([1]))],
        prompt_tokens=1,
    )
    assert body["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == []


def test_completion_logprobs_shape_and_offsets() -> None:
    sampled = output("t1t22", token_ids=[1, 22], logprobs=logprobs_for([1, 22]))
    shaped = LogprobFormatter().completion(sampled, text_offset=5)
    assert shaped == {
        "tokens": ["t1", "t22"],
        "token_logprobs": [-0.1, -0.1],
        "top_logprobs": [{"t1": -0.1, "t101": -2.5}, {"t22": -0.1, "t122": -2.5}],
        "text_offset": [5, 7],
    }


def test_completion_body_indexes_choices_per_prompt_and_n() -> None:
    request = CompletionRequest(model="m", prompt=["a", "b"], n=2, temperature=1)

    class Final:
        def __init__(self, *outputs: CompletionOutput) -> None:
            self.outputs = list(outputs)

    body = format_completion(
        request,
        response_id="cmpl-1",
        created=9,
        results=[
            (1, Final(output("y0"), output("y1", 1))),
            (0, Final(output("x0"), output("x1", 1))),
        ],
        prompt_texts=["", ""],
        prompt_tokens=2,
    )
    assert body["object"] == "text_completion"
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "x0"),
        (1, "x1"),
        (2, "y0"),
        (3, "y1"),
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10}


def test_chunk_writer_frames_are_valid_json_with_usage_null_when_asked() -> None:
    writer = ChunkWriter("chatcmpl-1", "chat.completion.chunk", 5, "m", include_usage=True)
    frame = writer.chunk([{"index": 0, "delta": {"content": "hi"}}])
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame[6:]) == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}}],
        "usage": None,
    }
    usage_frame = orjson.loads(writer.usage_chunk({"prompt_tokens": 1})[6:])
    assert usage_frame["choices"] == []
    assert usage_frame["usage"] == {"prompt_tokens": 1}
    plain = ChunkWriter("x", "text_completion", 5, "m", include_usage=False)
    assert "usage" not in orjson.loads(plain.chunk([])[6:])


def test_error_frame_then_done() -> None:
    frame = error_frame(InvalidRequest("bad", param="x"))
    assert orjson.loads(frame[6:])["error"]["param"] == "x"
    assert DONE_FRAME == b"data: [DONE]\n\n"


def test_stream_of_plain_text_passes_deltas_through_and_finishes() -> None:
    stream = ChoiceStream(chat(), 0)
    assert stream.role_entry()["delta"]["role"] == "assistant"
    assert stream.delta_entries("Hel", None)[0]["delta"] == {"content": "Hel"}
    (finish,) = stream.finish_entries("stop")
    assert finish == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_stream_with_named_tool_choice_streams_arguments() -> None:
    request = chat(
        tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    stream = ChoiceStream(request, 0)
    (first,) = stream.delta_entries('{"city": ', None)
    call = first["delta"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": '}
    assert call["index"] == 0 and call["id"].startswith("call_")
    (second,) = stream.delta_entries('"Paris"}', None)
    assert second["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '"Paris"}'}}]
    assert stream.finish_entries("stop")[-1]["finish_reason"] == "tool_calls"


def test_stream_with_required_tool_choice_emits_the_calls_at_the_end() -> None:
    stream = ChoiceStream(chat(tools=[TOOL], tool_choice="required"), 0)
    assert stream.delta_entries('[{"name": "get_weather", ', None) == []
    assert stream.delta_entries('"parameters": {"city": "Paris"}}]', None) == []
    calls_entry, finish = stream.finish_entries("stop")
    (call,) = calls_entry["delta"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert finish["finish_reason"] == "tool_calls"


def test_stream_with_auto_tool_choice_flushes_plain_text_once_it_cannot_be_a_call() -> None:
    stream = ChoiceStream(chat(tools=[TOOL]), 0)
    assert stream.delta_entries("", None) == []
    (entry,) = stream.delta_entries("The weather", None)
    assert entry["delta"] == {"content": "The weather"}
    assert stream.delta_entries(" is nice", None)[0]["delta"] == {"content": " is nice"}


def test_auto_tool_call_parsing() -> None:
    tools = chat(tools=[TOOL]).tools or []
    (call,) = (
        parse_auto_tool_calls('{"name": "get_weather", "arguments": {"city": "Oslo"}}', tools) or []
    )
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    hermes = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    assert parse_auto_tool_calls(hermes, tools)
    assert parse_auto_tool_calls("It is sunny.", tools) is None
    assert parse_auto_tool_calls('{"name": "unknown", "arguments": {}}', tools) is None
    assert parse_auto_tool_calls('{"answer": 42}', tools) is None


def test_might_be_tool_call() -> None:
    assert might_be_tool_call("")
    assert might_be_tool_call("  {")
    assert might_be_tool_call("<tool_")
    assert not might_be_tool_call("Hello")


def test_truncated_required_output_keeps_complete_calls() -> None:
    text = '[{"name": "a", "parameters": {}}, {"name": "b", "parameters": {"x": 1}}, {"name": "c'
    assert [c["function"]["name"] for c in parse_required_tool_calls(text)] == ["a", "b"]
    assert complete_array_items("no array") == []


def test_message_text_joins_text_parts_and_refuses_images() -> None:
    request = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        ]
    )
    assert message_text(request.messages[0], 0) == "a\nb"
    with pytest.raises(InvalidRequest) as raised:
        message_text(request.messages[1], 1)
    assert raised.value.param == "messages[1].content"


def test_assistant_tool_calls_become_text_for_templates_without_tool_support() -> None:
    request = chat(
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    )
    messages = template_messages(request, chat_template="{{ messages }}")
    assert messages[0]["role"] == "system"
    assert orjson.loads(messages[1]["content"]) == [{"name": "f", "arguments": {"a": 1}}]
    assert messages[2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    with_support = template_messages(request, chat_template="{{ message.tool_calls }}")
    assert with_support[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from modelplane.server.default_model import default_model_dir, is_prepared

    if not is_prepared(default_model_dir()):
        pytest.skip("the bundled model is not prepared (make model)")
    from vllm.tokenizers import get_tokenizer

    return get_tokenizer(str(default_model_dir()))


def test_chat_prompt_uses_the_models_template(tokenizer: Any) -> None:
    text, ids = build_chat_prompt(chat(), tokenizer)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert ids == tokenizer.encode(text, add_special_tokens=False)


def test_tools_reach_a_template_without_tool_support_as_a_system_note(tokenizer: Any) -> None:
    text, _ = build_chat_prompt(chat(tools=[TOOL]), tokenizer)
    assert "get_weather" in text
    text_none, _ = build_chat_prompt(chat(tools=[TOOL], tool_choice="none"), tokenizer)
    assert "get_weather" not in text_none


def test_embedding_body_and_base64() -> None:
    body = format_embeddings(EmbeddingRequest(model="e", input=["a"]), [[0.5, -1.0]], 3)
    assert body == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
        "model": "e",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    assert encode_embedding([1.0], "base64") == "AACAPw=="


class _Final:
    def __init__(self, *outputs: CompletionOutput) -> None:
        self.outputs = list(outputs)


async def test_engine_error_mid_stream_is_an_error_frame_then_done() -> None:
    from types import SimpleNamespace

    from modelplane.server.chat import stream_chat_completion
    from modelplane.server.errors import InternalError
    from modelplane.server.request_record import RequestRecord

    async def failing_outputs() -> Any:
        raise InternalError("Generation failed: RuntimeError")
        yield  # pragma: no cover - makes this an async generator

    engine = SimpleNamespace(tokenizer=None, special_token_ids=frozenset())
    record = RequestRecord(request_id="r1", route="/v1/chat/completions")
    first = _Final(output("Hel", finish=None, token_ids=[1]))
    frames = [
        frame
        async for frame in stream_chat_completion(
            chat(stream=True),
            engine,  # type: ignore[arg-type]
            record,
            failing_outputs(),
            first,
            response_id="chatcmpl-r1",
            created=1,
        )
    ]
    assert orjson.loads(frames[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    assert orjson.loads(frames[1][6:])["choices"][0]["delta"] == {"content": "Hel"}
    assert orjson.loads(frames[-2][6:])["error"]["type"] == "server_error"
    assert frames[-1] == DONE_FRAME
    assert record.completion_tokens == 1
    assert record.first_token_at is not None


def test_chat_template_kwargs_cannot_replace_the_template(tokenizer: Any) -> None:
    request = chat(chat_template_kwargs={"chat_template": "HACKED", "tokenize": True})
    text, _ = build_chat_prompt(request, tokenizer)
    assert "HACKED" not in text
    assert text.endswith("<|im_start|>assistant\n")


class EncodeSpy:
    """The real tokenizer, counting the characters it is asked to tokenize."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.encoded_chars = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        self.encoded_chars += len(text)
        return list(self._tokenizer.encode(text, **kwargs))


def test_a_chat_prompt_too_long_for_the_context_is_refused_before_tokenizing(
    tokenizer: Any,
) -> None:
    from modelplane.server.errors import ContextLengthExceeded
    from modelplane.server.prompts import longest_token_chars

    spy = EncodeSpy(tokenizer)
    longest = longest_token_chars(tokenizer)
    request = chat(messages=[{"role": "user", "content": "word " * 200_000}])
    with pytest.raises(ContextLengthExceeded) as raised:
        build_chat_prompt(request, spy, max_model_len=2048, max_token_chars=longest)
    assert raised.value.param == "messages"
    assert spy.encoded_chars == 0
    _, ids = build_chat_prompt(chat(), spy, max_model_len=2048, max_token_chars=longest)
    assert ids and spy.encoded_chars > 0


def test_bad_chat_template_kwargs_are_named_without_the_renderers_error(tokenizer: Any) -> None:
    request = chat(chat_template_kwargs={"documents": 5})
    with pytest.raises(InvalidRequest) as raised:
        build_chat_prompt(request, tokenizer)
    assert raised.value.param == "chat_template_kwargs"
    assert "documents" in raised.value.message
    assert "not iterable" not in raised.value.message  # Python's words, not the client's


def test_a_templates_own_complaint_about_the_messages_is_passed_on() -> None:
    from jinja2.exceptions import TemplateError

    class StrictTemplate:
        chat_template = "{{ raise_exception('Conversation roles must alternate') }}"

        def apply_chat_template(self, *args: Any, **kwargs: Any) -> str:
            raise TemplateError("Conversation roles must alternate")

    with pytest.raises(InvalidRequest) as raised:
        build_chat_prompt(chat(), StrictTemplate())
    assert raised.value.param == "messages"
    assert "Conversation roles must alternate" in raised.value.message
