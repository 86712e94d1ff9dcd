"""A prompt that cannot fit the context is refused from its length, before it is tokenized."""

from __future__ import annotations

from typing import Any

import pytest

from modelplane.server.errors import ContextLengthExceeded
from modelplane.server.prompts import longest_token_chars, token_id_lists


class CountingTokenizer:
    """A three-token vocabulary whose longest token is three characters; counts the text
    it is asked to tokenize."""

    def __init__(self) -> None:
        self.encoded_chars = 0

    def get_vocab(self) -> dict[str, int]:
        return {"a": 0, "bb": 1, "ccc": 2}

    def encode(self, text: str, **_: Any) -> list[int]:
        self.encoded_chars += len(text)
        return [0] * len(text)


def test_longest_token_chars_reads_the_vocabulary() -> None:
    assert longest_token_chars(CountingTokenizer()) == 3
    assert longest_token_chars(object()) == 0  # unknown: no bound


def test_a_prompt_longer_than_any_tokenization_could_fit_is_refused_untokenized() -> None:
    tokenizer = CountingTokenizer()
    with pytest.raises(ContextLengthExceeded) as raised:
        token_id_lists(
            ["fits", "x" * 301], tokenizer, param="prompt", max_model_len=100, max_token_chars=3
        )
    assert raised.value.param == "prompt"
    assert "100 tokens" in raised.value.message
    assert tokenizer.encoded_chars == len("fits")  # the long one was never tokenized


def test_a_prompt_that_might_fit_is_tokenized() -> None:
    tokenizer = CountingTokenizer()
    ids = token_id_lists("x" * 300, tokenizer, param="input", max_model_len=100, max_token_chars=3)
    assert len(ids[0]) == 300
    assert tokenizer.encoded_chars == 300


def test_token_id_prompts_are_not_bounded_by_characters() -> None:
    ids = token_id_lists([1] * 500, CountingTokenizer(), param="prompt", max_model_len=100)
    assert ids == [[1] * 500]  # their length is checked against the context later, exactly
