"""`GET /v1/models` and `GET /v1/models/{id}`: the served names and LoRA adapters."""

from __future__ import annotations

from typing import Any

from modelplane.server.auth import authorize_model
from modelplane.server.engine import Engine
from modelplane.server.errors import ModelNotFound
from modelplane.server.request_record import RequestRecord


def list_models(engine: Engine, record: RequestRecord) -> dict[str, Any]:
    """The served models; a key restricted to some models sees only those."""
    listing = engine.list_models()
    allowed = record.allowed_models
    if allowed is None:
        return listing
    return {**listing, "data": [entry for entry in listing["data"] if entry["id"] in allowed]}


def retrieve_model(engine: Engine, model_id: str, record: RequestRecord) -> dict[str, Any]:
    """One entry of the listing; 403 when the key may not use it, 404 for an unknown id."""
    authorize_model(record.allowed_models, model_id, record.key_name)
    for entry in engine.list_models()["data"]:
        if entry["id"] == model_id:
            return dict(entry)
    raise ModelNotFound(f"The model `{model_id}` does not exist.", param="model")
