"""`GET /v1/models` and `GET /v1/models/{id}`: the served names and LoRA adapters."""

from __future__ import annotations

from typing import Any

from modelplane.server.engine import Engine
from modelplane.server.errors import ModelNotFound


def list_models(engine: Engine) -> dict[str, Any]:
    return engine.list_models()


def retrieve_model(engine: Engine, model_id: str) -> dict[str, Any]:
    """One entry of the listing; 404 in OpenAI's shape for an unknown id."""
    for entry in engine.list_models()["data"]:
        if entry["id"] == model_id:
            return dict(entry)
    raise ModelNotFound(f"The model `{model_id}` does not exist.", param="model")
