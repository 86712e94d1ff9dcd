"""The operator under restarts, objects it does not own and failing API calls (real kopf process).

The emulator counts every write request (`emulator.writes`), answers injected errors or holds
requests unanswered (`emulator.faults`, `HANG`) and refuses a change to a Deployment's
selector, as a real API server does.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.operator.kube_emulator import HANG, Emulator, start_emulator
from tests.operator.operator_process import (
    DEPLOYMENTS,
    JOBS,
    NS,
    Cluster,
    OperatorProcess,
    wait_for,
)

pytestmark = pytest.mark.slow

MODEL = {"uri": "hf://Qwen/Qwen3-8B"}
STUCK = 20  # more than the 16 handler threads a fixed pool had


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with start_emulator(namespaces=[NS], kubeconfig_dir=tmp_path) as running:
        yield running


class Operator:
    """One operator process at a time, its log kept when a test fails."""

    def __init__(self, emulator: Emulator, logs: Path) -> None:
        self.emulator, self.logs, self.started = emulator, logs, 0
        self.process: OperatorProcess | None = None

    def start(self) -> OperatorProcess:
        self.started += 1
        log = self.logs / f"operator-{self.started}.log"
        self.process = OperatorProcess(self.emulator, log, "--no-leader-elect")
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop_and_report()
        self.process = None


@pytest.fixture
def operator(emulator: Emulator, tmp_path: Path) -> Iterator[Operator]:
    running = Operator(emulator, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def reconciles(process: OperatorProcess, trigger: str) -> float:
    """modelplane_operator_reconciles_total for `trigger`, every result summed."""
    try:
        text = httpx.get(process.metrics_url, timeout=2).text
    except httpx.HTTPError:
        return 0.0
    prefix = 'modelplane_operator_reconciles_total{result="'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'trigger="{trigger}"' in line
    )


def test_a_restart_on_an_unchanged_cluster_sends_no_writes(
    emulator: Emulator, operator: Operator, record_property: Any
) -> None:
    cluster = Cluster(emulator)
    specs = {
        "plain": {"model": MODEL},
        "scaled": {"model": MODEL, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}},
        "guarded": {"model": MODEL, "replicas": 2},  # a PDB too
        "cached": {"model": MODEL, "cache": {"size": "10Gi"}},
    }
    first = operator.start()
    for name, spec in specs.items():
        cluster.create_md(name, spec)
    for name in specs:  # reconciled, with its status written
        cluster.wait_condition(name, "SpecValid", "True", timeout=60)
    time.sleep(1.0)  # the Deployment events of the first reconciles settle
    operator.stop()

    emulator.emulator.writes.clear()
    second = operator.start()
    wait_for(
        lambda: reconciles(second, "resume") >= len(specs),
        timeout=60,
        what="the restarted operator to resume every ModelDeployment",
    )
    time.sleep(1.0)  # anything the resumed reconciles would still send
    writes = list(emulator.emulator.writes)
    record_property("restart_writes", len(writes))
    assert first is not second
    assert writes == [], writes


def test_a_deployment_it_does_not_own_is_reported_and_left_alone(
    emulator: Emulator, operator: Operator
) -> None:
    cluster = Cluster(emulator)
    squatter = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama", "namespace": NS, "labels": {"app": "someone-else"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "someone-else"}},
            "template": {
                "metadata": {"labels": {"app": "someone-else"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }
    created = cluster.http.post(DEPLOYMENTS, json=squatter)
    assert created.status_code in (200, 201), created.text
    before = created.json()
    operator.start()
    cluster.create_md("llama", {"model": MODEL})

    ready = wait_for(
        lambda: (
            (c := cluster.conditions("llama").get("Ready", {})).get("reason") == "ChildConflict"
            and c
        ),
        timeout=60,
        what="Ready=False naming the Deployment it does not own",
    )
    assert ready["status"] == "False"
    assert f"Deployment {NS}/llama" in ready["message"]
    assert len(ready["message"]) < 200
    time.sleep(4.0)  # several retries later
    assert len(cluster.events("llama", "ChildConflict")) == 1
    after = cluster.get(f"{DEPLOYMENTS}/llama")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in after["metadata"]
    assert after["spec"]["selector"] == {"matchLabels": {"app": "someone-else"}}


def test_a_failing_reconcile_shows_in_the_status_with_a_short_true_message(
    emulator: Emulator, operator: Operator, record_property: Any
) -> None:
    cluster = Cluster(emulator)
    emulator.emulator.faults["POST", "deployments", None] = 500
    operator.start()
    cluster.create_md("phi", {"model": MODEL})
    failed = cluster.wait_condition("phi", "Reconciled", "False", timeout=60)
    assert failed["reason"] == "ApiError"
    assert "Deployment" in failed["message"] and "500" in failed["message"]
    assert len(failed["message"]) < 200
    assert "{" not in failed["message"]  # no raw API response

    # Recovery: the first retries come quickly once the fault is gone.
    emulator.emulator.faults.clear()
    healed = time.monotonic()
    cluster.wait_get(f"{DEPLOYMENTS}/phi", timeout=30)
    recovery = time.monotonic() - healed
    record_property("recovery_seconds", round(recovery, 2))
    wait_for(
        lambda: "Reconciled" not in cluster.conditions("phi"),
        timeout=30,
        what="the failure condition to clear",
    )
    assert recovery < 30


def test_a_conflict_on_create_is_not_called_vanished(
    emulator: Emulator, operator: Operator
) -> None:
    cluster = Cluster(emulator)
    emulator.emulator.faults["POST", "services", None] = 409
    operator.start()
    cluster.create_md("gemma", {"model": MODEL})
    failed = cluster.wait_condition("gemma", "Reconciled", "False", timeout=60)
    assert "vanished" not in failed["message"]
    assert "Service" in failed["message"] and "409" in failed["message"]


def test_a_fetch_job_it_does_not_own_is_never_deleted(
    emulator: Emulator, operator: Operator
) -> None:
    """Without a cache there is no fetch Job to keep: a Job of that name that is not ours stays."""
    cluster = Cluster(emulator)
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "llama-fetch", "namespace": NS},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "backup", "image": "busybox:1.36"}],
                }
            }
        },
    }
    created = cluster.http.post(JOBS, json=foreign)
    assert created.status_code in (200, 201), created.text
    operator.start()
    cluster.create_md("llama", {"model": MODEL})

    wait_for(
        lambda: cluster.get(f"{DEPLOYMENTS}/llama"),
        timeout=60,
        what="the ModelDeployment's Deployment (a reconcile has run)",
    )
    time.sleep(2.0)  # later reconciles, too
    assert cluster.get(f"{JOBS}/llama-fetch") is not None


def test_a_healthy_model_deployment_is_not_delayed_by_stuck_ones(
    emulator: Emulator, operator: Operator, record_property: Any
) -> None:
    """20 ModelDeployments whose API calls hang do not hold up a new healthy one.

    Injected fault: the emulator holds every GET of the stuck ones' Deployments unanswered (as an
    API server that stops answering for some objects); the operator's 30 s request timeout is
    longer than the test, so all 20 reconciles stay in flight throughout. They are released
    before the operator stops, so the teardown never waits on them.
    """
    cluster = Cluster(emulator)
    fake = emulator.emulator
    stuck = [f"stuck-{i}" for i in range(STUCK)]
    for name in stuck:
        fake.faults["GET", "deployments", name] = HANG
    try:
        operator.start()
        for name in stuck:
            cluster.create_md(name, {"model": MODEL})
        wait_for(lambda: fake.hung >= 16, timeout=60, what="the stuck reconciles to hang")
        with contextlib.suppress(AssertionError):  # a fixed pool of 16 threads never gets there
            wait_for(lambda: fake.hung >= STUCK, timeout=3, what="all of them to hang")
        hung_before = fake.hung

        cluster.create_md("healthy", {"model": MODEL})
        cluster.wait_get(f"{DEPLOYMENTS}/healthy", timeout=60)
        latency = (
            fake.created_at["deployments", NS, "healthy"]
            - fake.created_at["modeldeployments", NS, "healthy"]
        )
        record_property("healthy_deployment_seconds_with_20_stuck", round(latency, 3))
        sys.stdout.write(f"healthy Deployment after {latency:.3f} s with {hung_before} hung\n")
        # Typically ~0.1 s; the bound leaves room for a loaded 2-core machine.
        assert latency < 3.0, f"{latency:.2f} s"
        assert hung_before == STUCK  # each stuck object held its own thread, all at once
        assert fake.hung == STUCK  # and they were still stuck while the healthy one went through
    finally:
        fake.release_hung()
