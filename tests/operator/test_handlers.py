"""handlers.py's pure parts (the handlers themselves run in test_operator_integration.py)."""

import pytest

from modelplane.operator.handlers import MAX_RETRY_DELAY_SECONDS, retry_delay, validated_spec
from modelplane.operator.spec import SpecError


def test_api_errors_back_off_exponentially_up_to_a_cap():
    delays = [retry_delay(retry) for retry in range(8)]
    assert delays[:4] == [10, 20, 40, 80]
    assert delays == sorted(delays)
    assert delays[-1] == MAX_RETRY_DELAY_SECONDS
    assert retry_delay(10_000) == MAX_RETRY_DELAY_SECONDS


@pytest.mark.parametrize("name", ["9-lives", "Qwen3", "a" * 64, "trailing-"])
def test_a_name_that_cannot_name_a_service_is_a_spec_error(name):
    body = {"metadata": {"name": name, "namespace": "ml"}, "spec": {"model": {"uri": "hf://o/m"}}}
    with pytest.raises(SpecError) as info:
        validated_spec(body)
    assert info.value.field == "metadata.name"
