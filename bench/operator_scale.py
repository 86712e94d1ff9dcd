"""Operator scale: N ModelDeployments created at once against the fake Kubernetes API (kmock),
reconciled by the real operator process. Reports time until every one has its Deployment and
Service, reconciles per second and the operator's peak RSS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.runner import log
from bench.servers import free_port, stop_process_group

NAMESPACE = "default"
MD_PATH = f"/apis/modelplane.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"
IMAGE = "registry.example/modelplane-server:bench"
RECONCILES_METRIC = "modelplane_operator_reconciles_total"


@dataclass
class OperatorScaleResult:
    deployments: int
    seconds_to_all_children: float
    reconciles: int
    reconciles_per_s: float
    operator_peak_rss_mib: float
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"operator: {self.deployments} ModelDeployments created at once -> all Deployments "
            f"and Services in {self.seconds_to_all_children:.1f} s; {self.reconciles} reconciles "
            f"({self.reconciles_per_s:.1f}/s); operator peak RSS "
            f"{self.operator_peak_rss_mib:.0f} MiB; {self.errors} create errors"
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelplane.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"model": {"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}},
    }


def peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reconciles_total(metrics_text: str) -> int:
    """Sum of the operator's reconcile counter over all its labels (Prometheus text format)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(RECONCILES_METRIC + "{") or line.startswith(RECONCILES_METRIC + " "):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def names_in(client: httpx.Client, path: str) -> set[str]:
    response = client.get(path)
    if response.status_code != 200:
        return set()
    return {item["metadata"]["name"] for item in response.json().get("items", [])}


def wait_for_children(client: httpx.Client, names: set[str], timeout_s: float) -> bool:
    """Poll the list endpoints; twice a second is precise enough and keeps the API unloaded."""
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        deployments = names & names_in(client, DEPLOYMENTS)
        services = names & names_in(client, SERVICES)
        if len(deployments) == len(services) == len(names):
            return True
        if time.monotonic() - last_report > 10:
            log(
                f"operator: {len(deployments)} Deployments, {len(services)} Services of {len(names)}"
            )
            last_report = time.monotonic()
        time.sleep(0.5)
    return False


async def create_all(server_url: str, names: list[str]) -> int:
    """POST every ModelDeployment concurrently; returns how many the API refused."""
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(MD_PATH, json=model_deployment(n)) for n in names),
            return_exceptions=True,
        )
    return sum(
        1 for r in responses if isinstance(r, BaseException) or r.status_code not in (200, 201)
    )


def run_operator_scale(count: int = 200, timeout_s: float = 600.0) -> OperatorScaleResult:
    # The operator tests' emulator (kmock plus the gaps kopf needs covered); like `bench` itself,
    # importable from the repository root.
    from tests.operator.kube_emulator import start_emulator

    with (
        tempfile.TemporaryDirectory(prefix="bench-operator-") as workdir,
        start_emulator(namespaces=[NAMESPACE], kubeconfig_dir=Path(workdir)) as emulator,
    ):
        metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(emulator.kubeconfig_path)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log_path = Path(workdir) / "operator.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "modelplane.operator",
                    "--namespace", NAMESPACE,
                    "--no-leader-elect",
                    "--default-image", IMAGE,
                    "--metrics-port", str(metrics_port),
                    "--log-format", "plain",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            with httpx.Client(base_url=emulator.server_url, timeout=30) as client:
                # Ready when it reconciles: a first ModelDeployment gets its Deployment.
                client.post(MD_PATH, json=model_deployment("warmup")).raise_for_status()
                if not wait_for_children(client, {"warmup"}, timeout_s=120):
                    raise RuntimeError(
                        f"operator never reconciled:\n{log_path.read_text()[-3000:]}"
                    )
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                before = reconciles_total(httpx.get(metrics_url).text)

                names = [f"md-{i:04d}" for i in range(count)]
                started = time.perf_counter()
                errors = asyncio.run(create_all(emulator.server_url, names))
                done = wait_for_children(client, set(names), timeout_s)
                elapsed = time.perf_counter() - started
                if not done:
                    raise RuntimeError(f"not all children after {timeout_s:.0f} s")
                # Children land before each reconcile's status patch: wait for the counter too.
                reconciles = 0
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    reconciles = reconciles_total(httpx.get(metrics_url).text) - before
                    if reconciles >= count:
                        break
                    time.sleep(0.1)
                reconcile_window = time.perf_counter() - started
                rss = peak_rss_mib(process.pid)
        finally:
            stop_process_group(process, grace_s=15)
    return OperatorScaleResult(
        deployments=count,
        seconds_to_all_children=elapsed,
        reconciles=reconciles,
        reconciles_per_s=reconciles / reconcile_window,
        operator_peak_rss_mib=rss,
        errors=errors,
    )
