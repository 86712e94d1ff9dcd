"""Probes: /health (alive), /ready (loaded and not draining), /version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.server_harness import free_port


async def test_while_loading_health_is_200_and_ready_is_503(
    loading_app: httpx.AsyncClient,
) -> None:
    assert (await loading_app.get("/health")).status_code == 200
    ready = await loading_app.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "loading"


@pytest.mark.slow
def test_health_ready_and_version(anon_http: httpx.Client) -> None:
    assert anon_http.get("/health").json() == {"status": "ok"}
    assert anon_http.get("/ready").json() == {"status": "ready"}
    version = anon_http.get("/version").json()
    assert version["version"]
    assert version["vllm_version"].startswith("0.")


@pytest.mark.slow
def test_engine_that_cannot_load_ends_the_process_with_1(tmp_path: Path) -> None:
    """A max model length beyond the model's makes vLLM refuse: no half-alive server."""
    command = [sys.executable, "-m", "modelplane.server", "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), "--enforce-eager", "--max-model-len", "1000000"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "The engine failed; exiting" in result.stderr
