"""Prompts as token ids, bounded by the context before the tokenizer sees them.

Tokenizing costs CPU in proportion to the text, so a prompt that cannot fit is refused from
its length alone: no token spells more characters than the vocabulary's longest token, so a
text longer than `max_model_len` such tokens has more than `max_model_len` tokens. (Byte-level
BPE vocabularies write one character per byte, and a character is at least one byte.)
"""

from __future__ import annotations

from typing import Any

from modelplane.server.errors import ContextLengthExceeded, InvalidRequest


def longest_token_chars(tokenizer: Any) -> int:
    """The most characters one token of the vocabulary spells; 0 when unknown (no bound)."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        return 0
    return max(map(len, get_vocab()), default=0)


def check_length(text: str, max_model_len: int, max_token_chars: int, *, param: str) -> None:
    """Refuse, without tokenizing, a text too long to be `max_model_len` tokens."""
    if max_model_len and max_token_chars and len(text) > max_model_len * max_token_chars:
        what = "input" if param == "input" else "prompt"
        raise ContextLengthExceeded(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"{what} is {len(text)} characters long, more than {max_model_len} tokens can hold. "
            f"Please reduce the length of the {param}.",
            param=param,
        )


def token_id_lists(
    value: Any,
    tokenizer: Any,
    *,
    param: str,
    max_model_len: int = 0,
    max_token_chars: int = 0,
) -> list[list[int]]:
    """A string, a list of strings, a token list or a list of token lists -> one list each."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif value and all(isinstance(item, int) for item in value):
        items = [value]
    else:
        items = list(value)
    token_lists = []
    for item in items:
        if isinstance(item, str):
            check_length(item, max_model_len, max_token_chars, param=param)
            ids = tokenizer.encode(item)
        else:
            ids = list(item)
        if not ids:
            raise InvalidRequest(f"{param} must not be empty", param=param)
        token_lists.append(ids)
    return token_lists
