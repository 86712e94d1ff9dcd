"""`/v1/models`: the served names, in OpenAI's list shape."""

from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


def test_models_lists_the_served_name(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert ids[0] == MODEL
    entry = models.data[0]
    assert entry.object == "model"
    assert entry.owned_by == "modelplane"
    assert entry.created > 0


def test_models_body_is_an_openai_list(http: httpx.Client) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    assert body["data"][0]["max_model_len"] > 0


def test_retrieve_one_model(client: openai.OpenAI) -> None:
    assert client.models.retrieve(MODEL).id == MODEL


def test_retrieve_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
