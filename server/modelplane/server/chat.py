"""`POST /v1/chat/completions`: chat template -> engine -> OpenAI `chat.completion` (or chunks)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from modelplane.server.engine import Engine
from modelplane.server.errors import InvalidRequest
from modelplane.server.generation import (
    first_output,
    mark_first_token_from_metrics,
    run_to_completion,
    usage,
)
from modelplane.server.logprobs import LogprobFormatter, logprob_formatter
from modelplane.server.prompts import check_length
from modelplane.server.protocol import ChatCompletionRequest, ChatMessage, TextContentPart
from modelplane.server.request_record import RequestRecord
from modelplane.server.sampling import chat_sampling_params, resolve_max_tokens
from modelplane.server.streaming import ChoiceEntries, ChunkWriter, stream_choices
from modelplane.server.tools import (
    ChoiceStream,
    add_past_tool_calls,
    assistant_message,
    template_tools,
)

logger = logging.getLogger(__name__)

# `chat_template_kwargs` may set template variables, never replace the template or the call's
# own arguments (a client-supplied template is code the operator did not approve).
RESERVED_TEMPLATE_KWARGS = frozenset(
    {
        "chat_template",
        "conversation",
        "messages",
        "tools",
        "add_generation_prompt",
        "tokenize",
        "return_dict",
    }
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


def template_messages(request: ChatCompletionRequest, chat_template: str) -> list[dict[str, Any]]:
    """The request's messages as chat-template input (plain dicts, string content)."""
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
        add_past_tool_calls(entry, message, chat_template)
        messages.append(entry)
    return messages


def build_chat_prompt(
    request: ChatCompletionRequest,
    tokenizer: Any,
    *,
    max_model_len: int = 0,
    max_token_chars: int = 0,
) -> tuple[str, list[int]]:
    """Render the chat template (tools included) and tokenize; returns (text, token ids).

    A rendered prompt too long to fit `max_model_len` is refused before it is tokenized.
    """
    chat_template: str = tokenizer.chat_template or ""
    messages = template_messages(request, chat_template)
    tools = template_tools(request, chat_template, messages)
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
    except Exception as error:
        raise template_error(error, template_kwargs) from error
    check_length(text, max_model_len, max_token_chars, param="messages")
    return text, tokenizer.encode(text, add_special_tokens=False)


def template_error(error: Exception, template_kwargs: dict[str, Any]) -> InvalidRequest:
    """What a failed render says: the template's own complaint about the conversation (its
    `raise_exception`), never jinja's or Python's text about how rendering broke."""
    from jinja2.exceptions import TemplateError

    if type(error) is TemplateError:  # raised by the template itself, about the messages
        return InvalidRequest(
            f"The messages do not fit the model's chat template: {error}", param="messages"
        )
    logger.info("chat template failed: %s: %s", type(error).__name__, error)
    if template_kwargs:
        return InvalidRequest(
            "The model's chat template cannot be rendered with these chat_template_kwargs "
            f"({', '.join(sorted(template_kwargs))}); check their names and types.",
            param="chat_template_kwargs",
        )
    return InvalidRequest(
        "The model's chat template cannot render these messages.", param="messages"
    )


# --- response formatting ----------------------------------------------------------------------


def chat_logprobs(
    request: ChatCompletionRequest, completion: Any, formatter: LogprobFormatter
) -> list[dict[str, Any]] | None:
    """The choice's `logprobs.content` when the request asked for logprobs."""
    if not request.logprobs:
        return None
    return formatter.chat_content(completion, request.top_logprobs or 0)


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
    formatter = logprob_formatter(tokenizer, hidden_ids, request.skip_special_tokens)
    choices = []
    completion_tokens = 0
    for output in sorted(outputs, key=lambda o: o.index):
        message, finish_reason = assistant_message(request, output.text, output.finish_reason)
        content = chat_logprobs(request, output, formatter)
        choices.append(
            {
                "index": output.index,
                "message": message,
                "logprobs": None if content is None else {"content": content, "refusal": None},
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
    streams = [ChoiceStream(request, index) for index in range(request.n)]
    opening = [stream.role_entry() for stream in streams]
    return stream_choices(
        outputs,
        first,
        chat_choice_entries(request, engine, streams),
        writer,
        record,
        opening=opening,
    )


def chat_choice_entries(
    request: ChatCompletionRequest, engine: Engine, streams: Sequence[ChoiceStream]
) -> ChoiceEntries:
    """A chat stream's entries per engine completion: content or tool-call deltas, then finish."""
    formatter = logprob_formatter(
        engine.tokenizer, engine.special_token_ids, request.skip_special_tokens
    )
    top_logprobs = request.top_logprobs or 0
    with_logprobs = bool(request.logprobs)

    def entries(_prompt_index: int, completion: Any) -> list[dict[str, Any]]:
        stream = streams[completion.index]
        logprobs = formatter.chat_content(completion, top_logprobs) if with_logprobs else None
        found = stream.delta_entries(completion.text, logprobs)
        if completion.finish_reason is not None:
            found.extend(stream.finish_entries(completion.finish_reason))
        return found

    return entries


# --- endpoint ---------------------------------------------------------------------------------


async def create_chat_completion(
    request: ChatCompletionRequest, engine: Engine, record: RequestRecord
) -> dict[str, Any] | AsyncIterator[bytes]:
    """Validate, render and submit a chat request; a dict body or an SSE frame iterator."""
    record.use_model(request.model)
    lora_request = engine.resolve_generation_model(request.model)
    _, prompt_ids = build_chat_prompt(
        request,
        engine.tokenizer,
        max_model_len=engine.max_model_len,
        max_token_chars=engine.max_token_chars,
    )
    max_tokens = resolve_max_tokens(
        request.effective_max_tokens,
        len(prompt_ids),
        engine.max_model_len,
        prompt_param="messages",
    )
    params = chat_sampling_params(
        request, max_tokens=max_tokens, model_defaults=engine.default_sampling_params
    )
    record.prompt_tokens = len(prompt_ids)  # accepted: now they count
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
