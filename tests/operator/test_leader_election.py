"""Two real operator processes against the fake API: one leads, the other stands by and takes over."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelplane.operator.lease import micro_time
from tests.operator.kube_emulator import Emulator, start_emulator
from tests.operator.operator_process import DEPLOYMENTS, NS, Cluster, OperatorProcess, wait_for

pytestmark = pytest.mark.slow

LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/modelplane-operator"
# The exact moments of expiry and of the renew deadline are test_election.py's, on a fake clock.
# Here, real processes share 2 CPU cores with the emulator and pytest: no test but the one
# about expiry waits for a lease to expire, so the others give a stalled leader 20 s to renew.
# A takeover after a release or a lost Lease takes one 1 s retry period either way.
STEADY = (
    "--leader-elect-lease-duration", "30",
    "--leader-elect-renew-deadline", "20",
    "--leader-elect-retry-period", "1",
)  # fmt: skip
LEASE_DURATION_S = 8
EXPIRING = (
    "--leader-elect-lease-duration", str(LEASE_DURATION_S),
    "--leader-elect-renew-deadline", "6",
    "--leader-elect-retry-period", "1",
)  # fmt: skip
STOP_S = 30  # SIGTERM to exit: kopf's shutdown on a loaded machine
SPEC = {"model": {"uri": "hf://Qwen/Qwen3-8B"}}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with start_emulator(namespaces=[NS], kubeconfig_dir=tmp_path) as emulator:
        yield emulator


def start(
    emulator: Emulator, tmp_path: Path, pod: str, timings: tuple[str, ...] = STEADY
) -> OperatorProcess:
    # JSON log lines name the object of each handler line.
    flags = (*timings, "--log-format", "json")
    return OperatorProcess(emulator, tmp_path / f"{pod}.log", *flags, env={"POD_NAME": pod})


def holder(cluster: Cluster) -> str:
    lease = cluster.get(LEASE) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def reconciled(operator: OperatorProcess, name: str) -> bool:
    """Whether kopf's reconcile handler ran for this ModelDeployment in that process."""
    lines = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
    return any(
        (line.get("object") or {}).get("name") == name
        and line["message"].startswith("Handler 'reconcile'")
        for line in lines
    )


def test_one_replica_leads_and_the_standby_takes_over_when_it_stops(
    emulator: Emulator, tmp_path: Path
) -> None:
    cluster = Cluster(emulator)
    operators = {pod: start(emulator, tmp_path, pod) for pod in ("operator-a", "operator-b")}
    try:
        leader_identity = wait_for(lambda: holder(cluster), timeout=30, what="a Lease holder")
        pod = leader_identity.split("_")[0]
        (standby_pod,) = set(operators) - {pod}
        leader, standby = operators[pod], operators[standby_pod]
        wait_for(
            lambda: f"held by {leader_identity})" in standby.log(),
            what="the standby to see the leader",
            details=standby.log,
        )
        assert "Waiting for leadership (lease default/modelplane-operator held by" in standby.log()
        wait_for(lambda: "Acquired leadership" in leader.log(), what="the leader's log line")
        assert "Acquired leadership" not in standby.log()
        # The standby's pod is not killed while it waits: its liveness endpoint answers.
        assert httpx.get(standby.liveness_url, timeout=5).status_code == 200
        first = cluster.get(LEASE)
        assert first is not None
        assert first["spec"]["leaseDurationSeconds"] == 30
        assert first["spec"]["renewTime"].endswith("Z")

        cluster.create_md("first", SPEC)
        cluster.wait_get(f"{DEPLOYMENTS}/first")
        wait_for(lambda: reconciled(leader, "first"), what="the leader's reconcile log line")
        assert "Handler" not in standby.log()

        stopped_at = time.monotonic()
        assert leader.stop(timeout=STOP_S) == 0
        new_identity = wait_for(
            lambda: (h := holder(cluster)) and h.startswith(f"{standby_pod}_") and h,
            timeout=30,
            what="the standby to take the Lease over",
        )
        takeover = time.monotonic() - stopped_at
        print(f"\nSIGTERM of the leader -> standby holds the Lease: {takeover:.2f} s")
        lease = cluster.get(LEASE)
        assert lease is not None
        assert lease["spec"]["leaseTransitions"] == first["spec"]["leaseTransitions"] + 1
        assert lease["spec"]["acquireTime"] != first["spec"]["acquireTime"]
        # The old leader released the Lease: no waiting for its 30 s to expire.
        assert "Released leadership" in leader.log()

        cluster.create_md("second", SPEC)
        cluster.wait_get(f"{DEPLOYMENTS}/second", timeout=30)
        wait_for(lambda: reconciled(standby, "second"), what="the new leader's reconcile")
        assert not reconciled(leader, "second")
        assert (
            f"Acquired leadership (lease default/modelplane-operator, identity {new_identity})"
            in standby.log()
        )

        assert standby.stop(timeout=STOP_S) == 0
        assert holder(cluster) == ""
    finally:
        for operator in operators.values():
            operator.stop()


def test_a_leader_killed_without_releasing_is_replaced_once_its_lease_expires(
    emulator: Emulator, tmp_path: Path
) -> None:
    cluster = Cluster(emulator)
    a = start(emulator, tmp_path, "operator-a", EXPIRING)
    b: OperatorProcess | None = None
    try:
        wait_for(lambda: holder(cluster).startswith("operator-a_"), timeout=30, what="leadership")
        b = start(emulator, tmp_path, "operator-b", EXPIRING)
        wait_for(lambda: "Waiting for leadership" in b.log(), timeout=30, what="b standing by")
        a.process.kill()  # SIGKILL: no release
        a.process.wait()
        killed_at = time.monotonic()
        wait_for(
            lambda: holder(cluster).startswith("operator-b_"), timeout=45, what="b to take over"
        )
        waited = time.monotonic() - killed_at
        print(f"\nSIGKILL of the leader -> standby holds the Lease: {waited:.2f} s")
        # Not before the lease expired on b's clock: b saw a's last renewal at most one 1 s
        # retry period before the kill, and waits the 8 s lease duration from then.
        assert waited > LEASE_DURATION_S - 2
        cluster.create_md("after-kill", SPEC)
        cluster.wait_get(f"{DEPLOYMENTS}/after-kill", timeout=30)
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_leader_that_cannot_renew_exits_non_zero(emulator: Emulator, tmp_path: Path) -> None:
    cluster = Cluster(emulator)
    operator = start(emulator, tmp_path, "operator-a")
    try:
        wait_for(lambda: holder(cluster).startswith("operator-a_"), timeout=30, what="leadership")
        cluster.create_md("before", SPEC)
        cluster.wait_get(f"{DEPLOYMENTS}/before")
        # What a partition looks like from the API server: another replica renewed the Lease.
        now = micro_time(datetime.datetime.now(datetime.timezone.utc))
        cluster.patch(
            LEASE,
            {"spec": {"holderIdentity": "elsewhere", "renewTime": now,
                      "leaseDurationSeconds": 60}},
        )  # fmt: skip
        patched_at = time.monotonic()
        code = wait_for(lambda: operator.process.poll(), timeout=30, what="the operator to exit")
        print(
            f"\nLease taken by another holder -> leader exits: {time.monotonic() - patched_at:.2f} s"
        )
        assert code == 1
        assert "Lost leadership: exiting" in operator.log()
        assert holder(cluster) == "elsewhere"  # it never writes a Lease it no longer holds
    finally:
        operator.stop()


def test_a_standby_stops_at_once_without_touching_the_lease(
    emulator: Emulator, tmp_path: Path
) -> None:
    cluster = Cluster(emulator)
    now = micro_time(datetime.datetime.now(datetime.timezone.utc))
    lease: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "modelplane-operator", "namespace": NS},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now, "leaseTransitions": 4},
    }  # fmt: skip
    created = cluster.http.post(LEASE.rsplit("/", 1)[0], json=lease)
    assert created.status_code in (200, 201), created.text
    operator = start(emulator, tmp_path, "operator-a")
    try:
        wait_for(lambda: "held by elsewhere" in operator.log(), timeout=30, what="standing by")
        assert httpx.get(operator.liveness_url, timeout=5).status_code == 200
        assert operator.stop(timeout=STOP_S) == 0
        assert cluster.get(LEASE) == created.json()
    finally:
        operator.stop()
