"""`x-request-id`: the client's is echoed, otherwise one is made; on every response."""

from __future__ import annotations

import uuid

import httpx
import pytest

from modelplane.server.middleware import request_id_from, route_label

MODEL = "smollm2-135m-instruct"


def test_client_request_id_is_taken_when_sane() -> None:
    request_id, auth = request_id_from([(b"x-request-id", b"abc-123"), (b"authorization", b"B x")])
    assert (request_id, auth) == ("abc-123", b"B x")


@pytest.mark.parametrize("value", [b"", b"x" * 200, b"bad\x01id", "é".encode()])
def test_insane_request_ids_are_replaced(value: bytes) -> None:
    request_id, _ = request_id_from([(b"x-request-id", value)])
    assert len(request_id) == 32 and request_id != value.decode(errors="replace")


def test_route_labels_do_not_grow_with_paths() -> None:
    assert route_label("/v1/chat/completions") == "/v1/chat/completions"
    assert route_label("/v1/models/foo") == "/v1/models/{model}"
    assert route_label("/wp-admin/x") == "other"


async def test_request_id_on_responses_before_the_engine_loads(
    loading_app: httpx.AsyncClient,
) -> None:
    response = await loading_app.get("/v1/models", headers={"x-request-id": "loading-1"})
    assert response.status_code == 503
    assert response.headers["x-request-id"] == "loading-1"


@pytest.mark.slow
def test_client_request_id_is_echoed(http: httpx.Client) -> None:
    response = http.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "Paris is", "max_tokens": 2},
        headers={"x-request-id": "client-chosen-42"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-chosen-42"


@pytest.mark.slow
def test_request_id_is_generated_when_absent(http: httpx.Client) -> None:
    first = http.get("/v1/models").headers["x-request-id"]
    second = http.get("/v1/models").headers["x-request-id"]
    assert first != second
    uuid.UUID(hex=first)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        (
            "POST",
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "Hi"}]},
            404,
        ),
        ("POST", "/v1/chat/completions", {"model": MODEL, "messages": "x"}, 400),
        ("GET", "/v1/not-a-route", None, 404),
        ("GET", "/health", None, 200),
        ("GET", "/metrics", None, 200),
    ],
)
def test_request_id_on_errors_and_probes(
    http: httpx.Client, method: str, path: str, body: object, status: int
) -> None:
    response = http.request(method, path, json=body, headers={"x-request-id": "rid-e"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "rid-e"


@pytest.mark.slow
def test_request_id_on_401(anon_http: httpx.Client) -> None:
    response = anon_http.get("/v1/models", headers={"x-request-id": "rid-401"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "rid-401"


@pytest.mark.slow
def test_request_id_on_streams(http: httpx.Client) -> None:
    body = {"model": MODEL, "prompt": "Paris is", "max_tokens": 3, "stream": True}
    with http.stream("POST", "/v1/completions", json=body, headers={"x-request-id": "s-1"}) as r:
        assert r.headers["x-request-id"] == "s-1"
        assert r.headers["content-type"].startswith("text/event-stream")
        assert b"data: [DONE]" in b"".join(r.iter_bytes())
