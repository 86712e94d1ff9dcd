"""The leader-election Lease record (lease.py): pure functions of plain dicts, client-go's LeaseLock."""

from __future__ import annotations

import datetime
from typing import Any

from modelplane.operator.lease import (
    is_expired,
    micro_time,
    new_lease,
    observed_record,
    release_patch,
    renew_patch,
    takeover_patch,
)

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
