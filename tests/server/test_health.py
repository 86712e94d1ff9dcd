"""Probes: /health (alive), /ready (loaded and not draining), /version."""

from __future__ import annotations

import httpx
import pytest


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
