"""`/v1/embeddings`: a 400 on the generate-only default server; real vectors from a pooling one.

The pooling server is the bundled SmolLM2 checkpoint run by vLLM's pooling runner
(`--runner pooling --convert embed`): no other model is needed, and it starts like the main one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.server.server_harness import RunningServer, start_server

pytestmark = pytest.mark.slow

EMBED_MODEL = "smollm2-135m-embed"


def test_embeddings_on_a_generate_model_is_400_naming_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="smollm2-135m-instruct", input="hello")
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == "model"


@pytest.fixture(scope="module")
def embed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    workdir: Path = tmp_path_factory.mktemp("embed-server")
    running: RunningServer = start_server(
        workdir,
        ["--runner", "pooling", "--convert", "embed", "--served-model-name", EMBED_MODEL],
    )
    try:
        yield openai.OpenAI(base_url=running.api_url, api_key="unused", max_retries=0)
    finally:
        running.stop()


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_in_openai_shape(embed_client: openai.OpenAI) -> None:
    response = embed_client.embeddings.create(
        model=EMBED_MODEL, input=["The cat sat on the mat.", "A kitten rests on a rug.", "GDP"]
    )
    assert response.object == "list"
    assert response.model == EMBED_MODEL
    assert [item.index for item in response.data] == [0, 1, 2]
    assert all(item.object == "embedding" for item in response.data)
    vectors = [item.embedding for item in response.data]
    assert len({len(vector) for vector in vectors}) == 1
    assert len(vectors[0]) == 576  # SmolLM2-135M's hidden size
    assert response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens
    assert cosine(vectors[0], vectors[0]) == pytest.approx(1.0, abs=1e-4)
    # Real embeddings: the two sentences about a cat are closer than cat and economics.
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_base64_embeddings_decode_to_the_float_vectors(embed_client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; compare with an explicit float request.
    floats = embed_client.embeddings.create(
        model=EMBED_MODEL, input="hello world", encoding_format="float"
    )
    decoded = embed_client.embeddings.create(model=EMBED_MODEL, input="hello world")
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5)


def test_chat_on_an_embedding_model_is_400(embed_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        embed_client.chat.completions.create(
            model=EMBED_MODEL, messages=[{"role": "user", "content": "hi"}]
        )


def test_unknown_embedding_model_is_404(embed_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        embed_client.embeddings.create(model="text-embedding-3-small", input="hi")
