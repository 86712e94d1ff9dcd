"""What chat and completions share: draining engine outputs, usage, logprobs, chunk framing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import orjson

from modelplane.server.errors import InternalError
from modelplane.server.request_record import RequestRecord


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def first_output(outputs: AsyncIterator[Any]) -> Any:
    """Wait for the engine's first output so request errors still become a proper HTTP status.

    On any failure (or cancellation) the engine request is aborted by closing `outputs`.
    """
    try:
        first = await anext(outputs)
    except StopAsyncIteration:
        raise InternalError("The engine returned no output.") from None
    except BaseException:
        await outputs.aclose()  # type: ignore[attr-defined]
        raise
    return first


async def run_to_completion(outputs: AsyncIterator[Any]) -> Any:
    """The final RequestOutput of a non-streaming (FINAL_ONLY) request."""
    final = None
    async for output in outputs:
        final = output
    if final is None:
        raise InternalError("The engine returned no output.")
    return final


def mark_first_token_from_metrics(record: RequestRecord, output: Any) -> None:
    """For non-streaming requests: when the engine produced the first token, on our clock."""
    metrics: Any = getattr(output, "metrics", None)
    latency = getattr(metrics, "first_token_latency", 0.0)
    if latency and getattr(metrics, "arrival_time", 0.0):
        first_token_wall = metrics.arrival_time + latency
        record.first_token_at = time.perf_counter() - max(0.0, time.time() - first_token_wall)
    else:
        record.mark_first_token()


def token_text(token_id: int, decoded: str | None, tokenizer: Any) -> str:
    if decoded is not None:
        return decoded
    if tokenizer is None:
        return ""
    return str(tokenizer.decode([token_id]))


def sampled_logprobs(
    token_ids: Sequence[int],
    logprobs: Any,
    tokenizer: Any = None,
    hidden_ids: frozenset[int] = frozenset(),
) -> Iterator[tuple[str, float, list[tuple[str, float]]]]:
    """Per generated token: (text, logprob, candidates best-first) from vLLM's logprobs.

    Tokens in `hidden_ids` (special tokens such as EOS, absent from the text) are skipped so
    the tokens always spell the returned text.
    """
    for token_id, position in zip(token_ids, logprobs, strict=False):
        if not position or token_id in hidden_ids:
            continue
        ranked = sorted(position.items(), key=lambda item: (item[1].rank or 0, -item[1].logprob))
        candidates = [
            (token_text(tid, entry.decoded_token, tokenizer), max(entry.logprob, -9999.0))
            for tid, entry in ranked
        ]
        chosen = position.get(token_id)
        if chosen is None:
            continue
        yield (
            token_text(token_id, chosen.decoded_token, tokenizer),
            max(chosen.logprob, -9999.0),
            candidates,
        )


class ChunkWriter:
    """Frames stream chunks; the constant head of every chunk is serialized once per request."""

    def __init__(
        self, response_id: str, object_type: str, created: int, model: str, include_usage: bool
    ) -> None:
        head = orjson.dumps(
            {"id": response_id, "object": object_type, "created": created, "model": model}
        )
        self._prefix = b"data: " + head[:-1] + b',"choices":'
        self._suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._usage_prefix = b"data: " + head[:-1] + b',"choices":[],"usage":'
        self.include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return self._prefix + orjson.dumps(choices) + self._suffix

    def usage_chunk(self, usage_body: dict[str, int]) -> bytes:
        return self._usage_prefix + orjson.dumps(usage_body) + b"}\n\n"

    def usage_frame(self, record: RequestRecord) -> Callable[[], bytes] | None:
        """Makes the usage chunk when the stream ends (counts final); None unless asked for."""
        if not self.include_usage:
            return None
        return lambda: self.usage_chunk(usage(record.prompt_tokens, record.completion_tokens))
