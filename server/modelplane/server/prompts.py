"""Prompts as token ids: OpenAI's four shapes of `prompt` / `input`, tokenized."""

from __future__ import annotations

from typing import Any

from modelplane.server.errors import InvalidRequest


def token_id_lists(value: Any, tokenizer: Any, *, param: str) -> list[list[int]]:
    """A string, a list of strings, a token list or a list of token lists -> one list each."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif value and all(isinstance(item, int) for item in value):
        items = [value]
    else:
        items = list(value)
    token_lists = []
    for item in items:
        ids = tokenizer.encode(item) if isinstance(item, str) else list(item)
        if not ids:
            raise InvalidRequest(f"{param} must not be empty", param=param)
        token_lists.append(ids)
    return token_lists
