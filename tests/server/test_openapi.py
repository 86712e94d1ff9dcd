"""`/openapi.json`: served without a key, its request bodies are the models the routes validate."""

from __future__ import annotations

import httpx
from pydantic import TypeAdapter

from modelplane.server.openapi import ERROR_STATUSES, REQUEST_BODIES


async def test_openapi_json_is_served_without_a_key(loading_app: httpx.AsyncClient) -> None:
    response = await loading_app.get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{model_id}",
    }


async def test_request_bodies_are_the_pydantic_models_the_routes_parse(
    loading_app: httpx.AsyncClient,
) -> None:
    document = (await loading_app.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path, model in REQUEST_BODIES.items():
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        expected = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        expected.pop("$defs", None)
        assert schemas[model.__name__] == expected
    # FastAPI's 422 is never answered: the server maps validation errors to 400.
    assert "HTTPValidationError" not in schemas


async def test_every_error_status_documents_openais_error_envelope(
    loading_app: httpx.AsyncClient,
) -> None:
    document = (await loading_app.get("/openapi.json")).json()
    responses = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(responses) == {"200", *ERROR_STATUSES}
    assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
    for status in ERROR_STATUSES:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]
