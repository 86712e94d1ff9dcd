"""The real server, started once per test session: vLLM on CPU with the bundled model.

`server` runs `python -m modelplane.server` as a subprocess on a free loopback port with two
named API keys; `client` (openai SDK) and `http` (httpx) talk to it with the first key,
`anon_http` without one. `server_harness.start_server` starts extra servers (test_limits).
The drain test stops the shared server, so it is moved to the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from tests.server.server_harness import API_KEYS, RunningServer, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("server"),
        ["--max-concurrent-requests", "64", "--max-queued-requests", "256"],
        keys=API_KEYS,
        env={"MODELPLANE_LOG_FORMAT": "json", "MODELPLANE_DRAIN_TIMEOUT": "60"},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=server.key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http_client:
        yield http_client


@pytest.fixture(scope="session")
def anon_http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http_client:
        yield http_client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The drain test stops the shared server: run it after everything else."""
    items.sort(key=lambda item: item.path.name == "test_drain.py")


@pytest.fixture
async def loading_app() -> AsyncIterator[httpx.AsyncClient]:
    """The real app in-process before its engine has loaded (no lifespan: no engine starts)."""
    from modelplane.server import cli
    from modelplane.server.app import build_app

    settings = cli.build_settings(
        cli.parse_args(["--model", "/models/x", "--api-key", "t:sk-t"], {})
    )
    transport = httpx.ASGITransport(app=build_app(settings))
    headers = {"Authorization": "Bearer sk-t"}
    async with httpx.AsyncClient(transport=transport, base_url="http://app", headers=headers) as c:
        yield c
