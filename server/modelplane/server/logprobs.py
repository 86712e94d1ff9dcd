"""Sampled-token logprobs in OpenAI's two shapes: chat's `content` list, completions' lists.

vLLM gives per position a dict of candidate id -> Logprob; both shapes come from one walk
over it (`sampled_logprobs`), spelled with the tokenizer when vLLM did not decode a token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# OpenAI's floor for a logprob: -inf is not valid JSON.
MIN_LOGPROB = -9999.0


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
            (token_text(tid, entry.decoded_token, tokenizer), max(entry.logprob, MIN_LOGPROB))
            for tid, entry in ranked
        ]
        chosen = position.get(token_id)
        if chosen is None:
            continue
        yield (
            token_text(token_id, chosen.decoded_token, tokenizer),
            max(chosen.logprob, MIN_LOGPROB),
            candidates,
        )


@dataclass(frozen=True)
class LogprobFormatter:
    """Formats one request's logprobs: the tokenizer spells ids, `hidden_ids` are left out."""

    tokenizer: Any = None
    hidden_ids: frozenset[int] = frozenset()

    def chat_content(self, completion: Any, top_logprobs: int) -> list[dict[str, Any]] | None:
        """OpenAI's chat `logprobs.content`: [{token, logprob, bytes, top_logprobs}], or None."""
        if completion.logprobs is None:
            return None
        content = []
        for token, logprob, candidates in sampled_logprobs(
            completion.token_ids, completion.logprobs, self.tokenizer, self.hidden_ids
        ):
            top = [
                {"token": text, "logprob": value, "bytes": list(text.encode())}
                for text, value in candidates[:top_logprobs]
            ]
            content.append(
                {
                    "token": token,
                    "logprob": logprob,
                    "bytes": list(token.encode()),
                    "top_logprobs": top,
                }
            )
        return content

    def completion(self, completion: Any, text_offset: int) -> dict[str, Any] | None:
        """OpenAI's legacy completions `logprobs`: parallel lists plus character offsets."""
        if completion.logprobs is None:
            return None
        tokens: list[str] = []
        token_logprobs: list[float] = []
        top_logprobs: list[dict[str, float]] = []
        offsets: list[int] = []
        for token, logprob, candidates in sampled_logprobs(
            completion.token_ids, completion.logprobs, self.tokenizer, self.hidden_ids
        ):
            tokens.append(token)
            token_logprobs.append(logprob)
            top_logprobs.append(dict(candidates))
            offsets.append(text_offset)
            text_offset += len(token)
        return {
            "tokens": tokens,
            "token_logprobs": token_logprobs,
            "top_logprobs": top_logprobs,
            "text_offset": offsets,
        }


def logprob_formatter(
    tokenizer: Any, special_token_ids: frozenset[int], skip_special_tokens: bool
) -> LogprobFormatter:
    """Special tokens are hidden exactly when the text leaves them out."""
    return LogprobFormatter(tokenizer, special_token_ids if skip_special_tokens else frozenset())
