"""`POST /v1/completions`: prompt(s) -> engine -> OpenAI `text_completion` (or chunks)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from vllm.utils.async_utils import merge_async_iterators

from modelplane.server.engine import Engine
from modelplane.server.errors import InvalidRequest
from modelplane.server.generation import first_output, mark_first_token_from_metrics, usage
from modelplane.server.logprobs import LogprobFormatter, logprob_formatter
from modelplane.server.prompts import token_id_lists
from modelplane.server.protocol import CompletionRequest
from modelplane.server.request_record import RequestRecord
from modelplane.server.sampling import completion_sampling_params, resolve_max_tokens
from modelplane.server.streaming import ChoiceEntries, ChunkWriter, stream_choices


def completion_logprobs(
    request: CompletionRequest, completion: Any, text_offset: int, formatter: LogprobFormatter
) -> dict[str, Any] | None:
    """The choice's `logprobs` when the request asked for them."""
    if request.logprobs is None:
        return None
    return formatter.completion(completion, text_offset)


def format_completion(
    request: CompletionRequest,
    *,
    response_id: str,
    created: int,
    results: Sequence[tuple[int, Any]],
    prompt_texts: Sequence[str],
    prompt_tokens: int,
    tokenizer: Any = None,
    hidden_ids: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """The non-streaming `text_completion` body; `results` pairs prompt index and final output."""
    formatter = logprob_formatter(tokenizer, hidden_ids, request.skip_special_tokens)
    choices = []
    completion_tokens = 0
    for prompt_index, output in results:
        echo = prompt_texts[prompt_index] if request.echo else ""
        for completion in output.outputs:
            choices.append(
                {
                    "index": prompt_index * request.n + completion.index,
                    "text": echo + completion.text,
                    "logprobs": completion_logprobs(request, completion, len(echo), formatter),
                    "finish_reason": completion.finish_reason,
                }
            )
            completion_tokens += len(completion.token_ids)
    choices.sort(key=lambda choice: choice["index"])
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": request.model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def stream_completion(
    request: CompletionRequest,
    engine: Engine,
    record: RequestRecord,
    outputs: AsyncIterator[tuple[int, Any]],
    first: tuple[int, Any],
    *,
    prompt_texts: Sequence[str],
    response_id: str,
    created: int,
) -> AsyncIterator[bytes]:
    """SSE frames: text chunks (one choice each), finish chunks, usage chunk, [DONE]."""
    writer = ChunkWriter(
        response_id, "text_completion", created, request.model, request.include_usage_in_stream
    )
    entries = completion_choice_entries(request, engine, prompt_texts)
    return stream_choices(outputs, first, entries, writer, record, merged=True)


def completion_choice_entries(
    request: CompletionRequest, engine: Engine, prompt_texts: Sequence[str]
) -> ChoiceEntries:
    """A completion stream's entries per engine completion: text (echo first), then finish."""
    formatter = logprob_formatter(
        engine.tokenizer, engine.special_token_ids, request.skip_special_tokens
    )
    offsets: dict[int, int] = {}  # per choice: where its next text starts (for logprobs)

    def entries(prompt_index: int, completion: Any) -> list[dict[str, Any]]:
        index = prompt_index * request.n + completion.index
        text = completion.text
        if index not in offsets:
            echo = prompt_texts[prompt_index] if request.echo else ""
            text = echo + text
            offsets[index] = len(echo)
        logprobs = completion_logprobs(request, completion, offsets[index], formatter)
        offsets[index] += len(completion.text)
        found = []
        if text or logprobs:
            found.append(
                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": None}
            )
        if completion.finish_reason is not None:
            found.append(
                {
                    "index": index,
                    "text": "",
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                }
            )
        return found

    return entries


async def create_completion(
    request: CompletionRequest, engine: Engine, record: RequestRecord
) -> dict[str, Any] | AsyncIterator[bytes]:
    """Validate, tokenize and submit every prompt; a dict body or an SSE frame iterator."""
    record.use_model(request.model)
    lora_request = engine.resolve_generation_model(request.model)
    if request.echo and request.logprobs is not None:
        raise InvalidRequest("echo together with logprobs is not supported", param="echo")
    tokenizer = engine.tokenizer
    token_lists = token_id_lists(
        request.prompt,
        tokenizer,
        param="prompt",
        max_model_len=engine.max_model_len,
        max_token_chars=engine.max_token_chars,
    )
    all_params = [
        completion_sampling_params(
            request,
            max_tokens=resolve_max_tokens(
                request.effective_max_tokens, len(ids), engine.max_model_len, prompt_param="prompt"
            ),
            model_defaults=engine.default_sampling_params,
        )
        for ids in token_lists
    ]
    record.prompt_tokens = sum(len(ids) for ids in token_lists)  # accepted: now they count
    generators = []
    for prompt_index, (ids, params) in enumerate(zip(token_lists, all_params, strict=True)):
        engine_request_id = (
            record.request_id if len(token_lists) == 1 else f"{record.request_id}-{prompt_index}"
        )
        generators.append(engine.generate(ids, params, engine_request_id, lora_request))
    prompt_texts = (
        [tokenizer.decode(ids) for ids in token_lists] if request.echo else [""] * len(token_lists)
    )
    if request.echo and isinstance(request.prompt, str):
        prompt_texts = [request.prompt]
    response_id = f"cmpl-{record.request_id}"
    created = int(time.time())
    merged: AsyncGenerator[tuple[int, Any], None] = merge_async_iterators(*generators)
    if request.stream:
        first = await first_output(merged)
        record.mark_first_token()
        return stream_completion(
            request,
            engine,
            record,
            merged,
            first,
            prompt_texts=prompt_texts,
            response_id=response_id,
            created=created,
        )
    results = [item async for item in merged]
    if results:
        mark_first_token_from_metrics(record, results[0][1])
    body = format_completion(
        request,
        response_id=response_id,
        created=created,
        results=results,
        prompt_texts=prompt_texts,
        prompt_tokens=record.prompt_tokens,
        tokenizer=tokenizer,
        hidden_ids=engine.special_token_ids,
    )
    record.completion_tokens = body["usage"]["completion_tokens"]
    return body
