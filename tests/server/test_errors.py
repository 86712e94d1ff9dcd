"""Every error in OpenAI's shape: 400 (not 422) for bad JSON and fields, 404s, 405, 503."""

from __future__ import annotations

import httpx
import openai
import pytest

from modelplane.server.endpoint import parse_request
from modelplane.server.errors import InvalidRequest, validation_param
from modelplane.server.protocol import ChatCompletionRequest
from tests.server.server_harness import RunningServer

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "Hi"}]


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error


def test_validation_param_names_the_field_path() -> None:
    assert validation_param(("temperature",)) == "temperature"
    assert validation_param(("body", "messages", 0, "content")) == "messages[0].content"
    assert validation_param(()) is None


def test_parse_request_maps_bad_json_and_fields_to_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        parse_request(b"{nope", ChatCompletionRequest)
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_request(b"[1, 2]", ChatCompletionRequest)
    with pytest.raises(InvalidRequest) as caught:
        parse_request(
            b'{"model": "m", "messages": [], "temperature": "hot"}', ChatCompletionRequest
        )
    assert caught.value.param == "temperature"


async def test_generation_while_loading_is_503(loading_app: httpx.AsyncClient) -> None:
    response = await loading_app.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
    error = response.json()["error"]
    assert response.status_code == 503
    assert error["type"] == "service_unavailable"
    assert (await loading_app.get("/v1/models")).status_code == 503


async def test_generation_while_loading_is_503_with_retry_after(
    loading_app: httpx.AsyncClient,
) -> None:
    response = await loading_app.post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1


def test_error_messages_and_params_stay_short() -> None:
    error = InvalidRequest(
        "token_id(s) [" + ", ".join(map(str, range(10**5))) + "]", param="p" * 10**4
    )
    body = error.body()["error"]
    assert len(body["message"]) <= 1000
    assert body["message"].startswith("token_id(s) [0, 1, 2")
    assert len(body["param"]) <= 200


async def test_unknown_route_is_404_in_shape_in_process(loading_app: httpx.AsyncClient) -> None:
    response = await loading_app.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.slow
def test_malformed_json_is_400_not_422(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        content=b'{"model": "smollm2-135m-instruct", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in str(error["message"])


@pytest.mark.slow
def test_body_that_is_not_an_object_is_400(http: httpx.Client) -> None:
    assert_openai_error(http.post("/v1/completions", json=["a", "b"]), 400)


@pytest.mark.slow
def test_bad_field_is_400_with_param(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": HI, "temperature": "hot"}
    )
    error = assert_openai_error(response, 400)
    assert error["param"] == "temperature"


@pytest.mark.slow
def test_missing_required_field_is_400_with_param(http: httpx.Client) -> None:
    error = assert_openai_error(http.post("/v1/chat/completions", json={"model": MODEL}), 400)
    assert error["param"] == "messages"


@pytest.mark.slow
def test_sdk_sees_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=HI, temperature=-1)  # type: ignore[arg-type]


@pytest.mark.slow
def test_unknown_model_is_404_model_not_found(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": HI})
    error = assert_openai_error(response, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"


@pytest.mark.slow
def test_logit_bias_with_many_unknown_token_ids_gets_a_short_error(http: httpx.Client) -> None:
    logit_bias = {str(token_id): 1 for token_id in range(10**6, 10**6 + 20_000)}
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "max_tokens": 1, "logit_bias": logit_bias},
    )
    error = assert_openai_error(response, 400)
    assert error["param"] == "logit_bias"
    assert len(response.content) < 2000


@pytest.mark.slow
def test_a_prompt_far_beyond_the_context_is_refused_and_counts_no_tokens(
    http: httpx.Client, server: RunningServer
) -> None:
    content = "All work and no play. " * 150_000  # 3.3 MB, under the body cap
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
        headers={"x-request-id": "too-long-prompt"},
    )
    error = assert_openai_error(response, 400)
    assert error["code"] == "context_length_exceeded"
    assert server.usage_line("too-long-prompt")["prompt_tokens"] == 0


@pytest.mark.slow
def test_unknown_route_is_404_in_openai_shape(http: httpx.Client) -> None:
    error = assert_openai_error(http.get("/v1/does-not-exist"), 404)
    assert error["code"] == "not_found"


@pytest.mark.slow
def test_wrong_method_is_405_in_openai_shape(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/chat/completions"), 405)


async def test_unexpected_exception_is_500_in_shape_without_traceback() -> None:
    from modelplane.server import cli
    from modelplane.server.middleware import RequestMiddleware
    from modelplane.server.state import init_state

    async def broken_app(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("secret internals at line 42")

    state = init_state(cli.build_settings(cli.parse_args(["--model", "/m"], {})))
    transport = httpx.ASGITransport(app=RequestMiddleware(broken_app, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/v1/models", headers={"x-request-id": "boom-1"})
    error = assert_openai_error(response, 500)
    assert error["type"] == "server_error"
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
