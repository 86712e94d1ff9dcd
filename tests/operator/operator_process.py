"""Helpers shared by the tests that run real operator processes against the kmock emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.operator.kube_emulator import Emulator, start_emulator

NS = "default"
MD_PATH = f"/apis/modelplane.io/v1alpha1/namespaces/{NS}/modeldeployments"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
SERVICES = f"/api/v1/namespaces/{NS}/services"
HPAS = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"
SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NS}/scaledobjects"
EVENTS = f"/api/v1/namespaces/{NS}/events"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MERGE = {"Content-Type": "application/merge-patch+json"}
IMAGE = "registry.example/modelplane-server:test"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "condition",
    details: Callable[[], Any] | None = None,
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {details()}" if details else "")
    )


class Cluster:
    """The emulator's REST API as a test sees it."""

    def __init__(self, emulator: Emulator) -> None:
        self.http = httpx.Client(base_url=emulator.server_url, timeout=10)
        self.emulator = emulator.emulator

    def get(self, path: str) -> dict[str, Any] | None:
        response = self.http.get(path)
        return response.json() if response.status_code == 200 else None

    def create_md(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": "modelplane.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        response = self.http.post(MD_PATH, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.patch(path, json=body, headers=MERGE)
        assert response.status_code == 200, response.text
        return response.json()

    def md(self, name: str) -> dict[str, Any]:
        body = self.get(f"{MD_PATH}/{name}")
        assert body is not None
        return body

    def conditions(self, name: str) -> dict[str, dict[str, Any]]:
        """A ModelDeployment's status conditions by type."""
        status = self.md(name).get("status") or {}
        return {c["type"]: c for c in status.get("conditions") or []}

    def wait_condition(
        self, name: str, type_: str, status: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The condition `type_` of ModelDeployment `name` once its status is `status`."""
        return wait_for(
            lambda: (c := self.conditions(name).get(type_)) and c["status"] == status and c,
            timeout,
            what=f"{name} {type_}={status}",
            details=lambda: self.conditions(name),
        )

    def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        """The Events about the object `name` with this reason."""
        items = (self.get(EVENTS) or {}).get("items", [])
        return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]

    def wait_event(self, name: str, reason: str) -> dict[str, Any]:
        """The first Event about the object `name` with this reason, once there is one."""
        return wait_for(
            lambda: next(iter(self.events(name, reason)), None), what=f"a {reason} Event on {name}"
        )

    def wait_get(self, path: str, timeout: float = 60.0) -> dict[str, Any]:
        return wait_for(lambda: self.get(path), timeout, what=path)

    def wait_recreated(self, path: str, old: dict[str, Any]) -> dict[str, Any]:
        """The object at `path` once it is another than `old` (a new uid): deleted, then made again."""

        def probe() -> dict[str, Any] | None:
            new = self.get(path)
            return new if new and new["metadata"]["uid"] != old["metadata"]["uid"] else None

        return wait_for(probe, what=f"{path} to be recreated")


class OperatorProcess:
    """`python -m modelplane.operator` against the emulator, its output in a log file."""

    def __init__(
        self,
        emulator: Emulator,
        log_path: Path,
        *flags: str,
        env: dict[str, str] | None = None,
    ) -> None:
        liveness, metrics = free_port(), free_port()
        self.liveness_url = f"http://127.0.0.1:{liveness}/healthz"
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        self.log_path = log_path
        environment = {**os.environ, "KUBECONFIG": str(emulator.kubeconfig_path), **(env or {})}
        environment.pop("KUBERNETES_SERVICE_HOST", None)
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "modelplane.operator",
                    "--namespace", NS,
                    "--default-image", IMAGE,
                    "--liveness", self.liveness_url,
                    "--metrics-port", str(metrics),
                    "--log-format", "plain",
                    *flags,
                ],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stop_and_report(self) -> None:
        """Stop; after an exit other than a clean one or SIGTERM's, the log's tail goes to stderr."""
        if self.stop() not in (0, -15):
            sys.stderr.write(self.log()[-5000:])


class OperatedCluster(Cluster):
    """The cluster and the one operator process reconciling in it."""

    def __init__(self, emulator: Emulator, operator: OperatorProcess) -> None:
        super().__init__(emulator)
        self.operator = operator


@contextmanager
def operated_cluster(
    logs: Path, *flags: str, namespaces: Sequence[str] = (NS,)
) -> Iterator[OperatedCluster]:
    """An emulator and one operator (no leader election), yielded once it reconciles.

    Ready means a first ModelDeployment, `warmup`, got its Deployment: the tests' own waits
    then measure the operator's reactions, not its start-up.
    """
    with start_emulator(namespaces=list(namespaces), kubeconfig_dir=logs) as emulator:
        operator = OperatorProcess(emulator, logs / "operator.log", "--no-leader-elect", *flags)
        try:
            cluster = OperatedCluster(emulator, operator)
            cluster.create_md(
                "warmup", {"model": {"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}}
            )
            cluster.wait_get(f"{DEPLOYMENTS}/warmup", timeout=60)
            yield cluster
        finally:
            operator.stop_and_report()
