"""Engine's model resolution and /v1/models listing (no engine process needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from modelplane.server.engine import Engine, build_lora_requests
from modelplane.server.errors import InternalError, InvalidRequest, ModelNotFound, engine_error
from modelplane.server.models import retrieve_model
from modelplane.server.request_record import RequestRecord
from modelplane.server.settings import LoRAModule


class TokenizerStub:
    all_special_ids = (0, 2)


def engine_with(names: list[str], loras: list[LoRAModule], **kwargs: Any) -> Engine:
    # Engine only reads the tokenizer and generation defaults from the AsyncLLM here.
    llm = SimpleNamespace(
        get_tokenizer=TokenizerStub,
        model_config=SimpleNamespace(get_diff_sampling_param=lambda: {"temperature": 0.6}),
    )
    return Engine(
        llm,  # type: ignore[arg-type]
        names,
        build_lora_requests(loras),
        max_model_len=kwargs.get("max_model_len", 2048),
        is_pooling_model=kwargs.get("is_pooling_model", False),
    )


def test_served_names_resolve_to_the_base_model_and_adapters_to_their_lora() -> None:
    engine = engine_with(
        ["smollm2", "default"], [LoRAModule("sql", "/a/sql"), LoRAModule("fr", "/a/fr")]
    )
    assert engine.resolve_model("smollm2") is None
    assert engine.resolve_model("default") is None
    sql = engine.resolve_model("sql")
    french = engine.resolve_model("fr")
    assert sql is not None and french is not None
    assert (sql.lora_name, sql.lora_path) == ("sql", "/a/sql")
    assert sql.lora_int_id != french.lora_int_id
    assert engine.default_sampling_params == {"temperature": 0.6}
    assert engine.special_token_ids == frozenset({0, 2})


def test_unknown_model_is_model_not_found_on_param_model() -> None:
    engine = engine_with(["smollm2"], [])
    with pytest.raises(ModelNotFound) as raised:
        engine.resolve_model("gpt-4")
    assert raised.value.status_code == 404
    assert raised.value.param == "model"


def test_chat_and_completions_on_an_embedding_model_are_400_naming_the_endpoint() -> None:
    embedder = engine_with(["e5"], [], is_pooling_model=True)
    with pytest.raises(InvalidRequest) as raised:
        embedder.resolve_generation_model("e5")
    assert raised.value.status_code == 400
    assert raised.value.param == "model"
    assert "/v1/embeddings" in raised.value.message
    with pytest.raises(ModelNotFound):
        embedder.resolve_generation_model("gpt-4")  # an unknown name is still a 404
    assert engine_with(["smollm2"], []).resolve_generation_model("smollm2") is None


def test_models_listing_has_aliases_then_adapters() -> None:
    engine = engine_with(["smollm2", "default"], [LoRAModule("sql", "/a/sql")])
    body = engine.list_models()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["smollm2", "default", "sql"]
    assert all(m["object"] == "model" and m["owned_by"] == "modelplane" for m in body["data"])
    assert body["data"][2]["parent"] == "smollm2"
    record = RequestRecord("r", "/v1/models/{model}")
    assert retrieve_model(engine, "sql", record)["id"] == "sql"
    with pytest.raises(ModelNotFound):
        retrieve_model(engine, "nope", record)


def test_duplicate_adapter_names_are_refused() -> None:
    with pytest.raises(ValueError):
        build_lora_requests([LoRAModule("a", "/x"), LoRAModule("a", "/y")])


def test_engine_errors_map_to_client_errors_without_internals() -> None:
    from vllm.exceptions import VLLMValidationError

    bad = engine_error(VLLMValidationError("token id 99999 out of range", parameter="prompt"))
    assert isinstance(bad, InvalidRequest)
    assert bad.param == "prompt"
    assert "99999" in bad.message
    crash = engine_error(RuntimeError("CUDA said /secret/path"))
    assert isinstance(crash, InternalError)
    assert "/secret/path" not in crash.message
