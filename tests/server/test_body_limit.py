"""Request bodies are capped before parsing: 413 in OpenAI's shape, declared or chunked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelplane.server import cli
from modelplane.server.body_limit import (
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    RequestBodyLimit,
    parse_byte_size,
)
from modelplane.server.errors import RequestTooLarge
from tests.server.server_harness import RunningServer

MODEL = "smollm2-135m-instruct"
MiB = 2**20


def test_sizes_take_decimal_and_binary_units() -> None:
    assert parse_byte_size("4194304") == 4 * MiB
    assert parse_byte_size("4MiB") == parse_byte_size("4Mi") == 4 * MiB
    assert parse_byte_size("512KB") == parse_byte_size("512k") == 512_000
    assert parse_byte_size("1G") == 10**9
    assert parse_byte_size("0") == 0
    with pytest.raises(ValueError, match="not a size"):
        parse_byte_size("lots")


def test_the_cap_is_a_flag_and_an_env_var_with_a_default_of_4_mib() -> None:
    settings = cli.build_settings(cli.parse_args(["--model", "/m"], {}))
    assert settings.max_request_body_bytes == DEFAULT_MAX_REQUEST_BODY_BYTES == 4 * MiB
    env = {"MODELPLANE_MAX_REQUEST_BODY_SIZE": "16MiB"}
    assert cli.build_settings(cli.parse_args(["--model", "/m"], env)).max_request_body_bytes == (
        16 * MiB
    )
    with pytest.raises(SystemExit):
        cli.build_settings(cli.parse_args(["--model", "/m", "--max-request-body-size", "x"], {}))


class BodyReader:
    """An ASGI app that reads the whole body, like a route does before parsing it."""

    def __init__(self) -> None:
        self.bytes_read = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            self.bytes_read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/completions", "headers": headers}


async def test_declared_length_over_the_cap_is_refused_before_reading() -> None:
    reader = BodyReader()
    limit = RequestBodyLimit(reader, max_bytes=1000)

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    with pytest.raises(RequestTooLarge) as caught:
        await limit(http_scope([(b"content-length", b"1001")]), receive, None)
    assert caught.value.status_code == 413
    assert "1001" not in caught.value.message and "bytes" in caught.value.message


async def test_chunked_body_is_refused_as_soon_as_it_passes_the_cap() -> None:
    reader = BodyReader()
    limit = RequestBodyLimit(reader, max_bytes=1000)
    chunks = iter([b"x" * 600, b"x" * 600, b"x" * 600])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    with pytest.raises(RequestTooLarge):
        await limit(http_scope([(b"transfer-encoding", b"chunked")]), receive, None)
    assert reader.bytes_read == 600  # the second chunk never reached the app
    assert next(chunks)  # the third was never received


async def test_body_at_the_cap_passes_and_zero_means_no_cap() -> None:
    for max_bytes, size in ((1000, 1000), (0, 10_000)):
        reader = BodyReader()
        sent: list[dict[str, Any]] = []
        body = iter([b"x" * size])

        async def receive(body: Iterator[bytes] = body) -> dict[str, Any]:
            return {"type": "http.request", "body": next(body), "more_body": False}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        headers = [(b"content-length", str(size).encode())]
        await RequestBodyLimit(reader, max_bytes)(http_scope(headers), receive, send)
        assert reader.bytes_read == size
        assert sent[0]["status"] == 200


# --- the real server (default cap: 4 MiB) ----------------------------------------------------


def huge_unknown_field_body(size: int) -> bytes:
    """A valid completion request plus an unknown field of `size` bytes."""
    head = b'{"model": "%s", "prompt": "Hi", "max_tokens": 1, "padding": "' % MODEL.encode()
    return head + b"a" * size + b'"}'


def assert_413_in_openai_shape(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:200]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "4 MiB" in error["message"]
    assert len(response.content) < 500


@pytest.mark.slow
def test_50_mb_unknown_field_is_413_from_content_length(
    http: httpx.Client, server: RunningServer
) -> None:
    body = huge_unknown_field_body(50 * 10**6)
    response = http.post(
        "/v1/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert_413_in_openai_shape(response)
    usage = server.usage_line(response.headers["x-request-id"])
    assert (usage["status"], usage["prompt_tokens"]) == (413, 0)
    # The connection stays usable: the server discarded the rest of the body.
    assert http.get("/v1/models").status_code == 200


@pytest.mark.slow
def test_50_mb_chunked_upload_is_413_while_streaming(http: httpx.Client) -> None:
    body = huge_unknown_field_body(50 * 10**6)

    def chunks() -> Iterator[bytes]:  # a generator body: no Content-Length, chunked encoding
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    response = http.post(
        "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_413_in_openai_shape(response)


@pytest.mark.slow
def test_body_just_under_the_cap_is_parsed_and_served(http: httpx.Client) -> None:
    body = huge_unknown_field_body(4 * MiB - 200)
    assert len(body) <= 4 * MiB
    response = http.post(
        "/v1/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["usage"]["completion_tokens"] == 1
