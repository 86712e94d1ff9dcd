"""The operator process around the election (leader.py): kopf runs only while leading.

Against the fake API (kmock, tests/operator/kube_emulator.py) on the real clock: these check
what runs when, not how long anything takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from modelplane.operator.election import ElectionConfig, LeaderElector
from modelplane.operator.kube import Kube
from modelplane.operator.leader import run_as_leader, standby_liveness
from modelplane.operator.lease import LeaseClient, holder
from modelplane.operator.metrics import LEADER
from tests.operator.kube_emulator import start_emulator
from tests.operator.operator_process import free_port


@pytest.fixture(scope="module")
def api() -> Iterator[kubernetes.client.ApiClient]:
    with start_emulator(namespaces=["ops"]) as emulator:
        yield emulator.api_client()


def test_the_operator_runs_only_while_leading_and_the_lease_is_released_after(
    api: kubernetes.client.ApiClient,
) -> None:
    config = ElectionConfig(
        namespace="ops", name="lifecycle", identity="a_1",
        lease_duration=2.0, renew_deadline=1.0, retry_period=0.2,
    )  # fmt: skip
    a = LeaderElector(LeaseClient(Kube(api), "ops", "lifecycle"), config)
    seen: list[str] = []

    async def operator(stop_flag: asyncio.Event, ready_flag: asyncio.Event) -> None:
        ready_flag.set()
        seen.append(holder(a.client.get(timeout=5) or {}))
        seen.append(f"leader gauge {LEADER._value.get():g}")

    assert run_as_leader(a, operator, liveness_endpoint=None, on_lost=seen.append) is True
    assert seen == ["a_1", "leader gauge 1"]
    assert holder(a.client.get(timeout=5) or {}) == ""
    assert LEADER._value.get() == 0


def test_standby_liveness_answers_only_while_standing_by() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    with standby_liveness(url):
        assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(url.replace("/healthz", "/other"), timeout=5).status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=5)
