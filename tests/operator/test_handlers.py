"""handlers.py's pure parts (the handlers themselves run in test_integration.py)."""

import pytest

from modelplane.operator.handlers import MAX_RETRY_DELAY_SECONDS, retry_delay, validated_spec
from modelplane.operator.spec import SpecError


def test_api_errors_are_retried_soon_then_back_off_exponentially_up_to_a_cap():
    delays = [retry_delay(retry, jitter=0) for retry in range(10)]
    assert delays[:4] == [1, 2, 4, 8]
    assert delays == sorted(delays)
    assert delays[-1] == MAX_RETRY_DELAY_SECONDS
    assert retry_delay(10_000, jitter=1) == MAX_RETRY_DELAY_SECONDS


def test_retries_are_spread_by_jitter_within_20_percent():
    assert retry_delay(3, jitter=-1) == pytest.approx(6.4)
    assert retry_delay(3, jitter=1) == pytest.approx(9.6)
    spread = {retry_delay(3) for _ in range(50)}
    assert len(spread) > 1
    assert all(6.4 <= d <= 9.6 for d in spread)


@pytest.mark.parametrize("name", ["9-lives", "Qwen3", "a" * 64, "trailing-"])
def test_a_name_that_cannot_name_a_service_is_a_spec_error(name):
    body = {"metadata": {"name": name, "namespace": "ml"}, "spec": {"model": {"uri": "hf://o/m"}}}
    with pytest.raises(SpecError) as info:
        validated_spec(body)
    assert info.value.field == "metadata.name"
