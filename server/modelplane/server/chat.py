"""`POST /v1/chat/completions`: chat template -> engine -> OpenAI `chat.completion` (or chunks)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from modelplane.server.engine import Engine
from modelplane.server.errors import InvalidRequest
from modelplane.server.generation import (
    ChunkWriter,
    first_output,
    mark_first_token_from_metrics,
    run_to_completion,
    sampled_logprobs,
    usage,
)
from modelplane.server.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    NamedToolChoice,
    TextContentPart,
)
from modelplane.server.request_record import RequestRecord
from modelplane.server.sampling import chat_sampling_params, resolve_max_tokens
from modelplane.server.sse import finish_stream
from modelplane.server.tools import (
    might_be_tool_call,
    parse_auto_tool_calls,
    parse_required_tool_calls,
    tool_call,
    tools_system_note,
)

# `chat_template_kwargs` may set template variables, never replace the template or the call's
# own arguments (a client-supplied template is code the operator did not approve).
RESERVED_TEMPLATE_KWARGS = frozenset(
    {"chat_template", "conversation", "tools", "add_generation_prompt", "tokenize", "return_dict"}
)


# --- prompt ---------------------------------------------------------------------------------


def message_text(message: ChatMessage, index: int) -> str:
    """A message's content as one string; only text parts are supported."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, TextContentPart):
            raise InvalidRequest(
                f"Content parts of type {part.type!r} are not supported by this model; "
                "only 'text' parts are.",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _template_tool_call(call: Any) -> dict[str, Any]:
    """Chat templates expect `arguments` as a mapping (Hugging Face's convention)."""
    try:
        arguments: Any = orjson.loads(call.function.arguments)
    except orjson.JSONDecodeError:
        arguments = call.function.arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": arguments},
    }


def template_messages(request: ChatCompletionRequest, chat_template: str) -> list[dict[str, Any]]:
    """The request's messages as chat-template input (plain dicts, string content)."""
    renders_tool_calls = "tool_calls" in chat_template
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        entry: dict[str, Any] = {
            "role": "system" if message.role == "developer" else message.role,
            "content": message_text(message, index),
        }
        if message.name:
            entry["name"] = message.name
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.tool_calls:
            calls = [_template_tool_call(call) for call in message.tool_calls]
            if renders_tool_calls:
                entry["tool_calls"] = calls
            elif not entry["content"]:
                entry["content"] = orjson.dumps(
                    [
                        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                        for c in calls
                    ]
                ).decode()
        messages.append(entry)
    return messages


def build_chat_prompt(request: ChatCompletionRequest, tokenizer: Any) -> tuple[str, list[int]]:
    """Render the chat template (tools included) and tokenize; returns (text, token ids).

    Tools reach the template as `tools=`; a template that ignores them gets a system note
    describing them instead. With `tool_choice: "none"` the tools are left out.
    """
    chat_template: str = tokenizer.chat_template or ""
    messages = template_messages(request, chat_template)
    tools = None
    if request.tools and request.effective_tool_choice != "none":
        if "tools" in chat_template:
            tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
        else:
            note = tools_system_note(request.tools)
            if messages and messages[0]["role"] == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{note}"
            else:
                messages.insert(0, {"role": "system", "content": note})
    template_kwargs = {
        key: value
        for key, value in (request.chat_template_kwargs or {}).items()
        if key not in RESERVED_TEMPLATE_KWARGS
    }
    try:
        text = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=request.add_generation_prompt,
            tokenize=False,
            **template_kwargs,
        )
    except Exception as error:  # jinja raises TemplateError / TypeError on bad conversations
        raise InvalidRequest(
            f"The messages do not fit the model's chat template: {error}", param="messages"
        ) from error
    return text, tokenizer.encode(text, add_special_tokens=False)


# --- response formatting ----------------------------------------------------------------------


def chat_logprobs(
    token_ids: Sequence[int],
    logprobs: Any,
    top_logprobs: int,
    tokenizer: Any = None,
    hidden_ids: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """OpenAI's chat `logprobs`: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}."""
    content = []
    for token, logprob, candidates in sampled_logprobs(token_ids, logprobs, tokenizer, hidden_ids):
        top = [
            {"token": text, "logprob": value, "bytes": list(text.encode())}
            for text, value in candidates[:top_logprobs]
        ]
        content.append(
            {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": top}
        )
    return {"content": content, "refusal": None}


def chat_message_and_finish(
    request: ChatCompletionRequest, text: str, finish_reason: str | None
) -> tuple[dict[str, Any], str | None]:
    """The assistant message for one choice, turning output into tool calls when it is one."""
    choice = request.effective_tool_choice
    calls: list[dict[str, Any]] | None = None
    if isinstance(choice, NamedToolChoice):
        calls = [tool_call(choice.function.name, text)]
    elif choice == "required":
        calls = parse_required_tool_calls(text) or None
    elif choice == "auto":
        calls = parse_auto_tool_calls(text, request.tools or [])
    if calls is None:
        return {"role": "assistant", "content": text, "refusal": None}, finish_reason
    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
    return message, ("tool_calls" if finish_reason == "stop" else finish_reason)


def format_chat_completion(
    request: ChatCompletionRequest,
    *,
    response_id: str,
    created: int,
    outputs: Sequence[Any],
    prompt_tokens: int,
    tokenizer: Any = None,
    hidden_ids: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """The non-streaming `chat.completion` body from vLLM's final CompletionOutputs."""
    choices = []
    completion_tokens = 0
    for output in sorted(outputs, key=lambda o: o.index):
        message, finish_reason = chat_message_and_finish(request, output.text, output.finish_reason)
        logprobs = None
        if request.logprobs and output.logprobs is not None:
            logprobs = chat_logprobs(
                output.token_ids,
                output.logprobs,
                request.top_logprobs or 0,
                tokenizer,
                hidden_ids if request.skip_special_tokens else frozenset(),
            )
        choices.append(
            {
                "index": output.index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        )
        completion_tokens += len(output.token_ids)
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


# --- streaming ------------------------------------------------------------------------------


class ChoiceStream:
    """Turns one choice's deltas into chunk `choices` entries, buffering possible tool calls."""

    def __init__(self, request: ChatCompletionRequest, index: int) -> None:
        self.request = request
        self.index = index
        choice = request.effective_tool_choice
        self.named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        # "required" always buffers; "auto" buffers while the text may still be a tool call.
        self.buffering = choice in ("required", "auto")
        self.buffer = ""
        self.buffered_logprobs: list[dict[str, Any]] = []
        self.named_call_started = False

    def role_entry(self) -> dict[str, Any]:
        content = None if self.named or self.request.effective_tool_choice == "required" else ""
        delta = {"role": "assistant", "content": content, "refusal": None}
        return {"index": self.index, "delta": delta, "logprobs": None, "finish_reason": None}

    def _content(self, text: str, logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {
            "index": self.index,
            "delta": {"content": text},
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": None,
        }

    def delta_entries(
        self, text: str, logprobs: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        if self.named:
            return self._named_arguments(text)
        if not self.buffering:
            return [self._content(text, logprobs)] if text or logprobs else []
        self.buffer += text
        if logprobs:
            self.buffered_logprobs.extend(logprobs)
        if self.request.effective_tool_choice == "auto" and not might_be_tool_call(self.buffer):
            self.buffering = False
            flushed, self.buffer = self.buffer, ""
            lps, self.buffered_logprobs = self.buffered_logprobs, []
            return [self._content(flushed, lps if logprobs is not None else None)]
        return []

    def _named_arguments(self, text: str) -> list[dict[str, Any]]:
        if not self.named_call_started:
            self.named_call_started = True
            call = tool_call(self.named or "", text)
            call["index"] = 0
            delta: dict[str, Any] = {"tool_calls": [call]}
        elif text:
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
        else:
            return []
        return [{"index": self.index, "delta": delta, "logprobs": None, "finish_reason": None}]

    def finish_entries(self, finish_reason: str | None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if self.named:
            entries.extend(self._named_arguments(""))
            if finish_reason == "stop":
                finish_reason = "tool_calls"
        elif self.buffering:
            message, finish_reason = chat_message_and_finish(
                self.request, self.buffer, finish_reason
            )
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                entries.append(
                    {
                        "index": self.index,
                        "delta": {"tool_calls": calls},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
            elif self.buffer:
                lps = self.buffered_logprobs if self.request.logprobs else None
                entries.append(self._content(self.buffer, lps))
        entries.append(
            {"index": self.index, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
        )
        return entries


def stream_chat_completion(
    request: ChatCompletionRequest,
    engine: Engine,
    record: RequestRecord,
    outputs: AsyncIterator[Any],
    first: Any,
    *,
    response_id: str,
    created: int,
) -> AsyncIterator[bytes]:
    """SSE frames: role chunks, content/tool-call chunks, finish chunks, usage chunk, [DONE]."""
    writer = ChunkWriter(
        response_id,
        "chat.completion.chunk",
        created,
        request.model,
        request.include_usage_in_stream,
    )
    return finish_stream(
        chat_chunks(request, engine, record, outputs, first, writer),
        outputs,
        usage_frame=writer.usage_frame(record),
        request_id=record.request_id,
    )


async def chat_chunks(
    request: ChatCompletionRequest,
    engine: Engine,
    record: RequestRecord,
    outputs: AsyncIterator[Any],
    first: Any,
    writer: ChunkWriter,
) -> AsyncIterator[bytes]:
    """The chunks of a chat stream: one choice per chunk, as OpenAI sends them."""
    streams = [ChoiceStream(request, index) for index in range(request.n)]
    top_logprobs = request.top_logprobs or 0
    tokenizer = engine.tokenizer
    hidden_ids = engine.special_token_ids if request.skip_special_tokens else frozenset()
    for stream in streams:
        yield writer.chunk([stream.role_entry()])
    output = first
    while output is not None:
        entries: list[dict[str, Any]] = []
        for completion in output.outputs:
            stream = streams[completion.index]
            if completion.token_ids:
                record.mark_first_token()
                record.completion_tokens += len(completion.token_ids)
            logprobs = None
            if request.logprobs and completion.logprobs is not None:
                logprobs = chat_logprobs(
                    completion.token_ids,
                    completion.logprobs,
                    top_logprobs,
                    tokenizer,
                    hidden_ids,
                )["content"]
            entries.extend(stream.delta_entries(completion.text, logprobs))
            if completion.finish_reason is not None:
                entries.extend(stream.finish_entries(completion.finish_reason))
        for entry in entries:
            yield writer.chunk([entry])
        output = await anext(outputs, None)


# --- endpoint ---------------------------------------------------------------------------------


async def create_chat_completion(
    request: ChatCompletionRequest, engine: Engine, record: RequestRecord
) -> dict[str, Any] | AsyncIterator[bytes]:
    """Validate, render and submit a chat request; a dict body or an SSE frame iterator."""
    record.use_model(request.model)
    lora_request = engine.resolve_generation_model(request.model)
    _, prompt_ids = build_chat_prompt(request, engine.tokenizer)
    record.prompt_tokens = len(prompt_ids)
    max_tokens = resolve_max_tokens(
        request.effective_max_tokens,
        len(prompt_ids),
        engine.max_model_len,
        prompt_param="messages",
    )
    params = chat_sampling_params(
        request, max_tokens=max_tokens, model_defaults=engine.default_sampling_params
    )
    response_id = f"chatcmpl-{record.request_id}"
    created = int(time.time())
    outputs = engine.generate(prompt_ids, params, record.request_id, lora_request)
    if request.stream:
        first = await first_output(outputs)
        record.mark_first_token()
        return stream_chat_completion(
            request, engine, record, outputs, first, response_id=response_id, created=created
        )
    final = await run_to_completion(outputs)
    mark_first_token_from_metrics(record, final)
    body = format_chat_completion(
        request,
        response_id=response_id,
        created=created,
        outputs=final.outputs,
        prompt_tokens=len(prompt_ids),
        tokenizer=engine.tokenizer,
        hidden_ids=engine.special_token_ids,
    )
    record.completion_tokens = body["usage"]["completion_tokens"]
    return body
