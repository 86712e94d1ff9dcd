"""API keys: bearer tokens, OpenAI-shaped 401s, open probe endpoints, key names."""

from __future__ import annotations

import httpx
import openai
import pytest

from modelplane.server.auth import ApiKeyAuth
from modelplane.server.errors import AuthenticationFailed
from modelplane.server.settings import ApiKey
from tests.server.server_harness import RunningServer

CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]}


def test_a_valid_key_returns_its_name() -> None:
    auth = ApiKeyAuth([ApiKey("alice", "sk-a"), ApiKey("bob", "sk-b")])
    assert auth.authenticate(b"Bearer sk-b") == "bob"
    assert auth.authenticate(b"bearer  sk-a") == "alice"


@pytest.mark.parametrize(
    "header", [None, b"", b"Bearer", b"Bearer ", b"Basic sk-a", b"Bearer sk-c", b"sk-a"]
)
def test_missing_or_wrong_keys_fail(header: bytes | None) -> None:
    auth = ApiKeyAuth([ApiKey("alice", "sk-a")])
    with pytest.raises(AuthenticationFailed) as caught:
        auth.authenticate(header)
    assert caught.value.status_code == 401
    assert caught.value.body()["error"]["code"] == "invalid_api_key"


def test_no_keys_configured_is_an_open_server() -> None:
    auth = ApiKeyAuth([])
    assert not auth.enabled
    assert auth.authenticate(None) is None


def assert_401_in_openai_shape(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"


@pytest.mark.slow
def test_missing_key_is_401_in_openai_shape(anon_http: httpx.Client) -> None:
    assert_401_in_openai_shape(anon_http.post("/v1/chat/completions", json=CHAT))
    assert_401_in_openai_shape(anon_http.get("/v1/models"))


@pytest.mark.slow
def test_wrong_key_is_401_and_the_key_is_not_echoed(
    anon_http: httpx.Client, server: RunningServer
) -> None:
    response = anon_http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong-123"})
    assert_401_in_openai_shape(response)
    assert "sk-wrong-123" not in response.text
    assert "sk-wrong-123" not in server.log_text()


@pytest.mark.slow
def test_sdk_with_wrong_key_raises_authentication_error(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.api_url, api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.slow
def test_every_configured_key_works(server: RunningServer) -> None:
    for key in server.keys.values():
        client = openai.OpenAI(base_url=server.api_url, api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/version"])
def test_probe_endpoints_stay_open(anon_http: httpx.Client, path: str) -> None:
    assert anon_http.get(path).status_code == 200


@pytest.mark.slow
def test_keys_never_appear_in_the_log(server: RunningServer, http: httpx.Client) -> None:
    assert http.get("/v1/models").status_code == 200
    log = server.log_text()
    for key in server.keys.values():
        assert key not in log
