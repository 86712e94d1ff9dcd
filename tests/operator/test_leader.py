"""Leader election: the Lease record's pure helpers, then the elector against the fake API.

The fake API (kmock, tests/operator/kube_emulator.py) answers a merge patch carrying a stale
`metadata.resourceVersion` with 409 like kube-apiserver, so races are real races here.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import kubernetes
import pytest

from modelplane.operator.cli import settings_from_args
from modelplane.operator.kube import Kube
from modelplane.operator.leader import (
    ElectionConfig,
    LeaderElector,
    Outcome,
    default_identity,
    election_namespace,
    run_as_leader,
    standby_liveness,
    timing_error,
)
from modelplane.operator.lease import (
    LeaseClient,
    LeaseError,
    holder,
    is_expired,
    micro_time,
    new_lease,
    observed_record,
    release_patch,
    renew_patch,
    takeover_patch,
)
from modelplane.operator.metrics import LEADER
from modelplane.operator.settings import seconds
from tests.operator.kube_emulator import Emulator, start_emulator
from tests.operator.operator_process import free_port

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 26, 6, 0, 0, 123, tzinfo=UTC)


def held(by: str, renewed: datetime.datetime, duration: int = 15, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "modelplane-operator", "namespace": "ops", "resourceVersion": "41"},
        "spec": {
            "holderIdentity": by,
            "leaseDurationSeconds": duration,
            "acquireTime": micro_time(renewed),
            "renewTime": micro_time(renewed),
            **spec,
        },
    }


# --- the Lease record -------------------------------------------------------------------------


def test_micro_time_is_rfc3339_utc_with_microseconds_and_z() -> None:
    assert micro_time(NOW) == "2026-11-26T06:00:00.000123Z"
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert micro_time(NOW.astimezone(paris)) == "2026-11-26T06:00:00.000123Z"


def test_another_holders_lease_expires_by_this_candidates_own_clock() -> None:
    """client-go's observedTime: lease duration after we last saw it change, on our clock."""
    lease = held("a_1", NOW, duration=15)
    assert not is_expired(lease, observed_at=100.0, now=114.9)
    assert is_expired(lease, observed_at=100.0, now=115.0)
    # The holder's renewTime plays no part: a skewed clock on its node changes nothing.
    skewed = held("a_1", NOW - datetime.timedelta(hours=1), duration=15)
    assert not is_expired(skewed, observed_at=100.0, now=101.0)


def test_a_record_change_is_what_restarts_the_clock() -> None:
    lease = held("a_1", NOW)
    renewed = held("a_1", NOW + datetime.timedelta(seconds=2))
    assert observed_record(lease) != observed_record(renewed)
    assert observed_record(lease) == ("a_1", micro_time(NOW), "41")


def test_a_lease_without_holder_is_free() -> None:
    assert is_expired(held("", NOW), observed_at=100.0, now=100.0)
    assert is_expired({}, observed_at=100.0, now=100.0)


def test_the_first_candidate_creates_the_lease_held_by_itself() -> None:
    lease = new_lease("ops", "modelplane-operator", "a_1", 15.0, NOW)
    assert lease["metadata"]["name"] == "modelplane-operator"
    assert lease["metadata"]["namespace"] == "ops"
    assert lease["spec"] == {
        "holderIdentity": "a_1",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-26T06:00:00.000123Z",
        "renewTime": "2026-11-26T06:00:00.000123Z",
        "leaseTransitions": 0,
    }


def test_takeover_is_optimistic_and_counts_a_transition() -> None:
    lease = held("a_1", NOW, leaseTransitions=3)
    later = NOW + datetime.timedelta(seconds=20)
    patch = takeover_patch(lease, "b_2", 2.5, later)
    assert patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {
            "holderIdentity": "b_2",
            "leaseDurationSeconds": 3,  # an int32: rounded up
            "acquireTime": micro_time(later),
            "renewTime": micro_time(later),
            "leaseTransitions": 4,
        },
    }
    assert takeover_patch(held("", NOW), "b_2", 15, later)["spec"]["leaseTransitions"] == 1


def test_renewal_is_optimistic_and_moves_only_the_renew_time() -> None:
    later = NOW + datetime.timedelta(seconds=2)
    patch = renew_patch(held("a_1", NOW, leaseTransitions=3), "a_1", 15, later)
    assert patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {
            "holderIdentity": "a_1",
            "leaseDurationSeconds": 15,
            "renewTime": micro_time(later),
        },
    }


def test_release_clears_the_holder_like_client_go_release_on_cancel() -> None:
    patch = release_patch(held("a_1", NOW), NOW)
    assert patch["metadata"] == {"resourceVersion": "41"}
    assert patch["spec"]["holderIdentity"] == ""
    assert patch["spec"]["leaseDurationSeconds"] == 1
    assert is_expired({"spec": patch["spec"]}, observed_at=100.0, now=100.0)


# --- configuration ----------------------------------------------------------------------------


def test_client_go_default_timings_are_valid_and_unsafe_ones_are_named() -> None:
    assert timing_error(15, 10, 2) is None
    assert "greater than the renew deadline" in str(timing_error(10, 10, 2))
    assert "retry period" in str(timing_error(15, 2, 2))
    assert "positive" in str(timing_error(15, 10, 0))


def test_the_lease_namespace_follows_flag_then_pod_then_watched_then_kubeconfig() -> None:
    assert election_namespace("ops", "pod-ns", ("ml",), "ctx") == "ops"
    assert election_namespace(None, "pod-ns", ("ml",), "ctx") == "pod-ns"
    assert election_namespace(None, None, ("team-*", "ml"), "ctx") == "ml"
    assert election_namespace(None, None, ("team-*",), "ctx") == "ctx"
    assert election_namespace(None, None, (), None) == "default"


def test_identity_is_the_pod_name_plus_a_random_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "modelplane-operator-7d9f-abcde")
    first, second = default_identity(), default_identity()
    assert first.startswith("modelplane-operator-7d9f-abcde_")
    assert first != second


@pytest.mark.parametrize(
    ("text", "value"), [("15", 15.0), ("15s", 15.0), ("0.5", 0.5), ("500ms", 0.5), ("1m", 60.0)]
)
def test_durations_take_go_style_units(text: str, value: float) -> None:
    assert seconds(text) == value


def test_leader_election_is_on_by_default_with_client_go_timings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MODELPLANE_LEADER_ELECT", "MODELPLANE_LEADER_ELECTION_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from_args([])
    assert settings.leader_elect is True
    assert settings.leader_election_id == "modelplane-operator"
    assert settings.leader_election_namespace is None
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (
        15.0,
        10.0,
        2.0,
    )


def test_leader_election_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_args(
        ["--leader-election-namespace", "ops", "--leader-election-id", "mp",
         "--leader-elect-lease-duration", "30s", "--leader-elect-renew-deadline", "20s",
         "--leader-elect-retry-period", "4s"]
    )  # fmt: skip
    assert (settings.leader_election_namespace, settings.leader_election_id) == ("ops", "mp")
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (30, 20, 4)
    assert settings_from_args(["--no-leader-elect"]).leader_elect is False
    assert settings_from_args(["--standalone"]).leader_elect is False  # deprecated alias
    monkeypatch.setenv("MODELPLANE_LEADER_ELECT", "false")
    monkeypatch.setenv("MODELPLANE_LEADER_ELECT_RETRY_PERIOD", "1s")
    settings = settings_from_args([])
    assert settings.leader_elect is False
    assert settings.retry_period == 1.0
    assert settings_from_args(["--leader-elect"]).leader_elect is True


def test_unsafe_timings_are_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        settings_from_args(["--leader-elect-renew-deadline", "20"])
    assert "the lease duration must be greater than the renew deadline" in capsys.readouterr().err


# --- the elector against the fake API ---------------------------------------------------------

SHORT = {"lease_duration": 2.0, "renew_deadline": 1.0, "retry_period": 0.2}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with start_emulator(namespaces=["ops"]) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def api(emulator: Emulator) -> kubernetes.client.ApiClient:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(emulator.kubeconfig_path), client_configuration=config
    )
    return kubernetes.client.ApiClient(configuration=config)


def candidate(
    api: kubernetes.client.ApiClient, lease: str, identity: str, **timings: float
) -> LeaderElector:
    config = ElectionConfig(namespace="ops", name=lease, identity=identity, **(SHORT | timings))
    return LeaderElector(LeaseClient(Kube(api), "ops", lease), config)


def test_first_candidate_leads_the_second_waits_for_it(api: kubernetes.client.ApiClient) -> None:
    a, b = candidate(api, "first-wins", "a_1"), candidate(api, "first-wins", "b_2")
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    assert holder(b.lease) == "a_1"
    version = a.lease["metadata"]["resourceVersion"]
    renew_time = a.lease["spec"]["renewTime"]
    time.sleep(0.01)
    assert a.try_renew(timeout=5) is Outcome.LEADING
    assert a.lease["metadata"]["resourceVersion"] != version
    assert a.lease["spec"]["renewTime"] > renew_time
    assert a.lease["spec"]["leaseTransitions"] == 0


def test_of_two_creates_exactly_one_wins(api: kubernetes.client.ApiClient) -> None:
    a, b = candidate(api, "create-race", "a_1"), candidate(api, "create-race", "b_2")
    now = datetime.datetime.now(UTC)
    assert a.client.get(timeout=5) is None
    first = a.client.create(new_lease("ops", "create-race", "a_1", 2, now), timeout=5)
    second = b.client.create(new_lease("ops", "create-race", "b_2", 2, now), timeout=5)
    assert first is not None and holder(first) == "a_1"
    assert second is None  # 409: b retries, and then finds the Lease held by a
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER


def test_of_two_takeovers_from_one_read_exactly_one_wins(api: kubernetes.client.ApiClient) -> None:
    a, b, c = (candidate(api, "race", i) for i in ("a_1", "b_2", "c_3"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    stale = a.lease
    later = datetime.datetime.now(UTC) + datetime.timedelta(seconds=60)  # a's lease expired
    results = [
        other.client.patch(takeover_patch(stale, other.config.identity, 2, later), timeout=5)
        for other in (b, c)
    ]
    assert results[0] is not None and results[1] is None  # the second got 409 Conflict
    assert holder(results[0]) == "b_2"
    assert results[0]["spec"]["leaseTransitions"] == 1
    # The old leader's renewal from its stale version conflicts, and it sees the new holder.
    assert a.try_renew(timeout=5) is Outcome.HELD_BY_OTHER
    assert holder(a.lease) == "b_2"


def test_an_expired_lease_is_taken_over(api: kubernetes.client.ApiClient) -> None:
    a, b = candidate(api, "expiry", "a_1"), candidate(api, "expiry", "b_2", lease_duration=1.5)
    assert a.try_acquire(timeout=5) is Outcome.LEADING  # leaseDurationSeconds 2
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    time.sleep(2.05)
    assert b.try_acquire(timeout=5) is Outcome.LEADING
    assert b.lease["spec"]["leaseTransitions"] == 1
    assert b.lease["spec"]["leaseDurationSeconds"] == 2


def test_a_released_lease_is_taken_at_the_next_attempt(api: kubernetes.client.ApiClient) -> None:
    a, b = candidate(api, "release", "a_1"), candidate(api, "release", "b_2")
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    a.release()
    assert b.try_acquire(timeout=5) is Outcome.LEADING
    # Releasing a Lease someone else holds now changes nothing.
    a.release()
    assert holder(b.client.get(timeout=5) or {}) == "b_2"


def test_a_leader_that_sees_another_holder_loses_at_once(api: kubernetes.client.ApiClient) -> None:
    a = candidate(api, "usurped", "a_1")
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    fresh = a.client.get(timeout=5) or {}
    usurp = renew_patch(fresh, "elsewhere", 60, datetime.datetime.now(UTC))
    assert a.client.patch(usurp, timeout=5) is not None
    lost: list[str] = []
    started = time.monotonic()
    a.keep_leading(threading.Event(), lost.append)
    assert lost == ["lease ops/usurped is held by elsewhere"]
    assert time.monotonic() - started < 1.0  # one retry period, not the renew deadline


def test_a_leader_that_cannot_reach_the_api_loses_after_the_renew_deadline(
    api: kubernetes.client.ApiClient,
) -> None:
    a = candidate(api, "partition", "a_1")
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    a.client = LeaseClient(
        Kube(kubernetes.client.ApiClient(configuration=config)), "ops", "partition"
    )
    with pytest.raises(LeaseError):
        a.client.get(timeout=1)
    lost: list[str] = []
    a.keep_leading(threading.Event(), lost.append)
    since_renewal = time.monotonic() - a.renewed_at
    assert lost == ["not renewed for 1 s"]
    assert 1.0 <= since_renewal < 2.0  # the renew deadline (1 s), within a retry period


class HangingClient:
    """A Lease API whose renewals never answer in time (a black-holed connection)."""

    def __init__(self, hang_s: float) -> None:
        self.hang_s = hang_s

    def patch(self, patch: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        time.sleep(self.hang_s)  # ignores its timeout, as a stuck socket can
        raise LeaseError("timed out")

    def get(self, timeout: float) -> dict[str, Any] | None:
        raise LeaseError("timed out")


def test_the_renew_deadline_holds_even_while_a_renewal_hangs(
    api: kubernetes.client.ApiClient,
) -> None:
    a = candidate(api, "hanging", "a_1")
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    a.client = HangingClient(hang_s=5.0)  # type: ignore[assignment]
    lost: list[str] = []
    stop = threading.Event()
    renewer = threading.Thread(target=a.keep_leading, args=(stop, lost.append), daemon=True)
    renewer.start()
    deadline = a.renewed_at + a.config.renew_deadline
    while not lost and time.monotonic() < deadline + 2:
        time.sleep(0.02)
    assert lost == ["not renewed for 1 s"]
    assert time.monotonic() - deadline < 0.5  # the watchdog, not the 5 s hang, decided
    stop.set()


def test_an_unexpected_error_while_renewing_ends_the_leadership(
    api: kubernetes.client.ApiClient,
) -> None:
    a = candidate(api, "broken", "a_1")
    assert a.try_acquire(timeout=5) is Outcome.LEADING

    class Broken:
        def patch(self, patch: dict[str, Any], timeout: float) -> None:
            raise ValueError("a malformed answer")

    a.client = Broken()  # type: ignore[assignment]
    lost: list[str] = []
    a.keep_leading(threading.Event(), lost.append)
    assert lost == ["renewing lease ops/broken failed"]


def test_the_operator_runs_only_while_leading_and_the_lease_is_released_after(
    api: kubernetes.client.ApiClient,
) -> None:
    a = candidate(api, "lifecycle", "a_1")
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
