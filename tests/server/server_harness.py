"""Starting and reading a real `python -m modelplane.server` process (used by conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

READY_TIMEOUT_S = 300
STOP_TIMEOUT_S = 60
API_KEYS = {"alice": "sk-test-alice-9f1c2e", "bob": "sk-test-bob-77d0aa"}


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str  # http://127.0.0.1:<port>
    keys: dict[str, str]  # key name -> key
    log_path: Path
    verify: ssl.SSLContext | bool = True  # httpx's `verify`: trusts a TLS server's CA

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def key(self) -> str:
        """The first key: what `client` and `http` authenticate with."""
        return next(iter(self.keys.values()))

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def json_log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    lines.append(orjson.loads(line))
        return lines

    def usage_line(self, request_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The usage line of one request (written when its response has finished)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.json_log_lines():
                if (
                    line.get("logger") == "modelplane.usage"
                    and line.get("request_id") == request_id
                ):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no usage line for request {request_id}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM (graceful drain), then SIGKILL if it takes too long; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # Engine processes left behind by a crash must not outlive the test session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 80) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(server: RunningServer, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"modelplane server exited with {server.process.returncode} before it was "
                f"ready. Log tail:\n{log_tail(server.log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(f"{server.base_url}/ready", timeout=2, verify=server.verify)
            if ready.status_code == 200:
                return
        time.sleep(0.5)
    server.stop()
    pytest.fail(
        f"modelplane server not ready after {timeout:.0f} s. Log tail:\n{log_tail(server.log_path)}"
    )


def start_server(
    workdir: Path,
    args: list[str],
    *,
    keys: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    ca_file: Path | None = None,
    wait: bool = True,
) -> RunningServer:
    """Start `python -m modelplane.server` on a free port and wait until /ready answers 200.

    With `--ssl-certfile` in `args`, the server speaks HTTPS and `ca_file` verifies it;
    `wait=False` returns at once (the caller watches it load).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "modelplane.server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--enforce-eager", *args]
    if keys:
        key_file = workdir / "api-keys.txt"
        key_file.write_text("".join(f"{name}:{key}\n" for name, key in keys.items()))
        command += ["--api-key-file", str(key_file)]
    log_path = workdir / "server.log"
    process_env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=process_env,
            start_new_session=True,  # its own process group: engine processes die with it
        )
    scheme = "https" if "--ssl-certfile" in args else "http"
    server = RunningServer(
        process,
        f"{scheme}://127.0.0.1:{port}",
        dict(keys or {}),
        log_path,
        verify=ssl.create_default_context(cafile=str(ca_file)) if ca_file else True,
    )
    if wait:
        wait_until_ready(server)
    return server


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )
