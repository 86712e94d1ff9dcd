"""The leader election (election.py): its configuration, then candidates against the fake API.

The fake API (kmock, tests/operator/kube_emulator.py) answers a merge patch carrying a stale
`metadata.resourceVersion` with 409 like kube-apiserver, so races are real races here. Time is
a FakeClock: it moves only when a test advances it, so deadlines and expiry are checked to the
exact moment instead of against wall-clock sleeps.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from modelplane.operator.cli import settings_from_args
from modelplane.operator.election import (
    ElectionConfig,
    LeaderElector,
    Outcome,
    default_identity,
    election_namespace,
    timing_error,
)
from modelplane.operator.kube import Kube
from modelplane.operator.lease import (
    LeaseClient,
    LeaseError,
    holder,
    micro_time,
    new_lease,
    renew_patch,
    takeover_patch,
)
from modelplane.operator.settings import seconds
from tests.operator.fake_clock import SETTLE_S, FakeClock
from tests.operator.kube_emulator import start_emulator
from tests.operator.operator_process import free_port

UTC = datetime.timezone.utc

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


# --- candidates against the fake API ----------------------------------------------------------

# Binary fractions, so that steps of virtual time add up exactly; the watchdog ticks every 1/16 s.
TIMINGS = {"lease_duration": 2.0, "renew_deadline": 1.0, "retry_period": 0.25}
RETRY = TIMINGS["retry_period"]


@pytest.fixture(scope="module")
def api() -> Iterator[kubernetes.client.ApiClient]:
    with start_emulator(namespaces=["ops"]) as emulator:
        yield emulator.api_client()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def candidate(
    api: kubernetes.client.ApiClient, lease: str, identity: str, clock: FakeClock
) -> LeaderElector:
    config = ElectionConfig(namespace="ops", name=lease, identity=identity, **TIMINGS)
    return LeaderElector(LeaseClient(Kube(api), "ops", lease), config, clock)


class InThread:
    """Run `target` in a daemon thread; `join` fails the test if it does not end."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self.result: list[Any] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(target(*args)), daemon=True
        )
        self.thread.start()

    def join(self) -> Any:
        self.thread.join(SETTLE_S)
        assert not self.thread.is_alive(), "the elector did not return"
        return self.result[0]


class Standby:
    """`acquire` in a thread: it returns once it leads, or once `stopping` is set."""

    def __init__(self, elector: LeaderElector) -> None:
        self.stopping = threading.Event()
        self.run = InThread(elector.acquire, self.stopping)


def test_first_candidate_leads_the_second_waits_for_it(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b = (candidate(api, "first-wins", i, clock) for i in ("a_1", "b_2"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    assert holder(b.lease) == "a_1"
    version = a.lease["metadata"]["resourceVersion"]
    renew_time = a.lease["spec"]["renewTime"]
    clock.advance(RETRY)
    assert a.try_renew(timeout=5) is Outcome.LEADING
    assert a.lease["metadata"]["resourceVersion"] != version
    assert a.lease["spec"]["renewTime"] > renew_time
    assert a.lease["spec"]["leaseTransitions"] == 0
    assert a.renewed_at == clock.monotonic()


def test_of_two_creates_exactly_one_wins(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b = (candidate(api, "create-race", i, clock) for i in ("a_1", "b_2"))
    now = clock.now()
    assert a.client.get(timeout=5) is None
    first = a.client.create(new_lease("ops", "create-race", "a_1", 2, now), timeout=5)
    second = b.client.create(new_lease("ops", "create-race", "b_2", 2, now), timeout=5)
    assert first is not None and holder(first) == "a_1"
    assert second is None  # 409: b retries, and then finds the Lease held by a
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER


def test_of_two_takeovers_from_one_read_exactly_one_wins(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b, c = (candidate(api, "race", i, clock) for i in ("a_1", "b_2", "c_3"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    stale = a.lease
    later = clock.now() + datetime.timedelta(seconds=60)  # a's lease expired
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


def test_an_unrenewed_lease_is_taken_over_one_lease_duration_after_it_was_seen(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b = (candidate(api, "expiry", i, clock) for i in ("a_1", "b_2"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING  # leaseDurationSeconds 2
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER  # seen now: expires at +2 s
    clock.advance(1.875)
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    clock.advance(0.125)
    assert b.try_acquire(timeout=5) is Outcome.LEADING
    assert b.lease["spec"]["leaseTransitions"] == 1
    assert b.lease["spec"]["leaseDurationSeconds"] == 2


def test_a_standby_waits_while_the_leader_renews_and_takes_over_once_it_stops(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    """client-go's observedTime: each renewal the standby sees restarts its lease duration."""
    a, b = (candidate(api, "standby", i, clock) for i in ("a_1", "b_2"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    standby = Standby(b)
    for _ in range(16):  # 4 s: twice the lease duration
        clock.sleeping(1)
        assert a.try_renew(timeout=5) is Outcome.LEADING
        clock.advance(RETRY)
    # a renewed last at 3.75 s; b, polling every retry period, saw it at 4 s: expiry at 6 s.
    for _ in range(8):
        clock.sleeping(1)
        assert holder(b.lease) == "a_1"
        clock.advance(RETRY)
    assert standby.run.join() is True
    assert clock.elapsed() == 6.0  # the lease duration plus up to one retry period, after 3.75
    assert holder(b.lease) == "b_2"
    assert b.lease["spec"]["leaseTransitions"] == 1


def test_a_standby_stops_waiting_when_told_to(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b = (candidate(api, "standby-stop", i, clock) for i in ("a_1", "b_2"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    standby = Standby(b)
    clock.sleeping(1)
    standby.stopping.set()
    assert standby.run.join() is False
    assert clock.elapsed() == 0


def test_a_released_lease_is_taken_at_the_next_attempt(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a, b = (candidate(api, "release", i, clock) for i in ("a_1", "b_2"))
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    assert b.try_acquire(timeout=5) is Outcome.HELD_BY_OTHER
    a.release()
    assert b.try_acquire(timeout=5) is Outcome.LEADING
    # Releasing a Lease someone else holds now changes nothing.
    a.release()
    assert holder(b.client.get(timeout=5) or {}) == "b_2"


class Leading:
    """`keep_leading` in a thread, its `on_lost` calls recorded."""

    def __init__(self, elector: LeaderElector) -> None:
        self.lost: list[str] = []
        self.lost_once = threading.Event()
        self.stopping = threading.Event()
        self.run = InThread(elector.keep_leading, self.stopping, self.on_lost)

    def on_lost(self, reason: str) -> None:
        self.lost.append(reason)
        self.lost_once.set()

    def wait_lost(self) -> list[str]:
        assert self.lost_once.wait(SETTLE_S), "leadership was never lost"
        return self.lost


def test_a_leader_renews_every_retry_period_and_stops_when_told_to(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a = candidate(api, "renewing", "a_1", clock)
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    leading = Leading(a)
    for _ in range(16):  # 4 s: four renew deadlines
        clock.sleeping(2)  # the renewer and the watchdog
        clock.advance(RETRY)
        clock.sleeping(2)
        assert a.renewed_at == clock.monotonic()  # renewed at this step
        assert a.lease["spec"]["renewTime"] == micro_time(clock.now())
    assert leading.lost == []
    leading.stopping.set()
    leading.run.join()
    assert leading.lost == []
    assert holder(a.client.get(timeout=5) or {}) == "a_1"  # stopping is not releasing


def test_a_leader_that_sees_another_holder_loses_at_its_next_renewal(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a = candidate(api, "usurped", "a_1", clock)
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    fresh = a.client.get(timeout=5) or {}
    assert a.client.patch(renew_patch(fresh, "elsewhere", 60, clock.now()), timeout=5) is not None
    leading = Leading(a)
    clock.sleeping(2)
    clock.advance(RETRY)
    assert leading.wait_lost() == ["lease ops/usurped is held by elsewhere"]
    leading.run.join()
    assert clock.elapsed() == RETRY  # one retry period, not the renew deadline


def test_a_leader_that_cannot_reach_the_api_loses_at_the_renew_deadline(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a = candidate(api, "partition", "a_1", clock)
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    a.client = LeaseClient(
        Kube(kubernetes.client.ApiClient(configuration=config)), "ops", "partition"
    )
    with pytest.raises(LeaseError):
        a.client.get(timeout=1)
    leading = Leading(a)
    for _ in range(3):  # renewals at 0.25, 0.5 and 0.75 s fail; each is retried
        clock.sleeping(2)
        clock.advance(RETRY)
    clock.sleeping(2)
    clock.advance(RETRY - 1 / 16)  # one watchdog tick before the deadline
    clock.sleeping(2)
    assert leading.lost == []
    clock.advance(1 / 16)
    assert leading.wait_lost() == ["not renewed for 1 s"]
    leading.run.join()
    assert clock.monotonic() - a.renewed_at == TIMINGS["renew_deadline"]


class HangingClient:
    """A Lease API whose renewal hangs for `hang_s` (a black-holed connection)."""

    def __init__(self, clock: FakeClock, hang_s: float) -> None:
        self.clock, self.hang_s = clock, hang_s
        self.hanging = self.returned = False

    def patch(self, patch: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        self.hanging = True
        self.clock.wait(
            threading.Event(), self.hang_s
        )  # ignores its timeout, as a stuck socket can
        self.returned = True
        raise LeaseError("timed out")

    def get(self, timeout: float) -> dict[str, Any] | None:
        raise LeaseError("timed out")


def test_the_renew_deadline_holds_even_while_a_renewal_hangs(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a = candidate(api, "hanging", "a_1", clock)
    assert a.try_acquire(timeout=5) is Outcome.LEADING
    a.client = hanging = HangingClient(clock, hang_s=5.0)  # type: ignore[assignment]
    leading = Leading(a)
    clock.sleeping(2)
    clock.advance(RETRY)  # the first renewal starts, and hangs
    clock.sleeping(2)  # the watchdog, and the renewal inside the hanging call
    assert hanging.hanging and not hanging.returned
    clock.advance(TIMINGS["renew_deadline"] - RETRY - 1 / 16)
    clock.sleeping(2)
    assert leading.lost == []
    clock.advance(1 / 16)
    assert leading.wait_lost() == ["not renewed for 1 s"]
    assert not hanging.returned  # the watchdog, not the end of the 5 s hang, decided
    assert clock.monotonic() - a.renewed_at == TIMINGS["renew_deadline"]
    clock.advance(5.0)  # the hang ends; the renewer sees the leadership is over
    leading.run.join()


def test_an_unexpected_error_while_renewing_ends_the_leadership(
    api: kubernetes.client.ApiClient, clock: FakeClock
) -> None:
    a = candidate(api, "broken", "a_1", clock)
    assert a.try_acquire(timeout=5) is Outcome.LEADING

    class Broken:
        def patch(self, patch: dict[str, Any], timeout: float) -> None:
            raise ValueError("a malformed answer")

    a.client = Broken()  # type: ignore[assignment]
    leading = Leading(a)
    clock.sleeping(2)
    clock.advance(RETRY)
    assert leading.wait_lost() == ["renewing lease ops/broken failed"]
    leading.run.join()
