"""`/openapi.json`: FastAPI's schema, with the request bodies the routes really validate.

The routes read raw bytes (parsing is ours: malformed JSON is a 400, not FastAPI's 422), so
FastAPI cannot see their bodies; this adds the pydantic request models from protocol.py as
the request bodies, the OpenAI error envelope for every error status the server answers, and
the outline of each success body. The fuzz test (tests/server/test_openapi_fuzz.py) holds the
server to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from modelplane.server.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"

REQUEST_BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}

ERROR_RESPONSE: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

USAGE: Schema = {
    "type": "object",
    "required": ["prompt_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}


def generation_body(object_name: str) -> Schema:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": object_name},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"$ref": REF.format(model="Usage")},
        },
    }


def stream_chunk(object_name: str) -> Schema:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": object_name},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"anyOf": [{"$ref": REF.format(model="Usage")}, {"type": "null"}]},
        },
    }


STREAM_CHUNKS: dict[str, Schema] = {
    "/v1/chat/completions": stream_chunk("chat.completion.chunk"),
    "/v1/completions": stream_chunk("text_completion"),
}

MODEL_ENTRY: Schema = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
    },
}

SUCCESS_BODIES: dict[str, Schema] = {
    "/v1/chat/completions": generation_body("chat.completion"),
    "/v1/completions": generation_body("text_completion"),
    "/v1/embeddings": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object"}},
            "model": {"type": "string"},
            "usage": {"$ref": REF.format(model="Usage")},
        },
    },
    "/v1/models": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": REF.format(model="Model")}},
        },
    },
    "/v1/models/{model_id}": {"$ref": REF.format(model="Model")},
}

# What each error status means here; every one carries the OpenAI error envelope.
ERROR_STATUSES = {
    "400": "Malformed JSON or an invalid field (`param` names it).",
    "401": "No API key, or an unknown one.",
    "403": "The API key may not use this model.",
    "404": "Unknown model or route.",
    "413": "The body is larger than --max-request-body-size.",
    "429": "Queue full or the key's rate limit reached; see Retry-After.",
    "503": "The model is loading or the server is draining.",
}
GENERATION_ERRORS = ("400", "401", "403", "404", "413", "429", "503")
MODEL_ERRORS = ("401", "403", "404", "503")


def error_responses(statuses: tuple[str, ...]) -> Schema:
    return {
        status: {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        for status in statuses
    }


def api_responses(path: str) -> Schema:
    success: Schema = {"application/json": {"schema": SUCCESS_BODIES[path]}}
    if path in STREAM_CHUNKS:
        # `"stream": true`: server-sent events, each `data:` a chunk (or, when the stream fails
        # after it began, an error), then `data: [DONE]`.
        chunk = STREAM_CHUNKS[path]
        success["text/event-stream"] = {
            "schema": {"anyOf": [chunk, {"$ref": REF.format(model="Error")}]}
        }
    errors = GENERATION_ERRORS if path in REQUEST_BODIES else MODEL_ERRORS
    return {"200": {"description": "OK", "content": success}, **error_responses(errors)}


def probe_responses(path: str) -> Schema:
    if path == "/metrics":
        content = {"text/plain": {"schema": {"type": "string"}}}
        return {"200": {"description": "Prometheus text exposition", "content": content}}
    status = {"application/json": {"schema": {"type": "object"}}}
    responses: Schema = {"200": {"description": "OK", "content": status}}
    if path in ("/health", "/ready"):
        responses["503"] = {"description": "Not ready or failed", "content": status}
    return responses


def build_openapi(app: FastAPI) -> Schema:
    """The app's OpenAPI document (cached on the app, as FastAPI does)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    _, definitions = models_json_schema(
        [(model, "validation") for model in REQUEST_BODIES.values()], ref_template=REF
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(definitions.get("$defs", {}))
    schemas.update({"Error": ERROR_RESPONSE, "Usage": USAGE, "Model": MODEL_ENTRY})
    components["securitySchemes"] = {"ApiKeyAuth": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                operation["responses"] = api_responses(path)
                operation["security"] = [{"ApiKeyAuth": []}]
            else:
                operation["responses"] = probe_responses(path)
            model = REQUEST_BODIES.get(path) if method == "post" else None
            if model is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
                    },
                }
    app.openapi_schema = schema
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi(app)` at the app's `openapi_url`."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
