"""`POST /v1/embeddings`: input(s) -> vLLM pooling runner -> OpenAI `list` of `embedding`s."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelplane.server.engine import Engine
from modelplane.server.errors import ContextLengthExceeded, InvalidRequest
from modelplane.server.prompts import token_id_lists
from modelplane.server.protocol import EmbeddingRequest
from modelplane.server.request_record import RequestRecord


def encode_embedding(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    """OpenAI's `embedding` field: a float list, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


def format_embeddings(
    request: EmbeddingRequest, vectors: Sequence[Sequence[float]], prompt_tokens: int
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_embedding(vector, request.encoding_format),
            }
            for index, vector in enumerate(vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


async def create_embedding(
    request: EmbeddingRequest, engine: Engine, record: RequestRecord
) -> dict[str, Any]:
    """Embed every input with the pooling runner; a 400 when the model generates text."""
    from vllm.pooling_params import PoolingParams

    record.use_model(request.model)
    lora_request = engine.resolve_model(request.model)
    if not engine.is_pooling_model:
        raise InvalidRequest(
            f"The model `{request.model}` does not support embeddings; "
            "serve an embedding model (vLLM's pooling runner, --runner pooling).",
            param="model",
        )
    token_lists = token_id_lists(
        request.input,
        engine.tokenizer,
        param="input",
        max_model_len=engine.max_model_len,
        max_token_chars=engine.max_token_chars,
    )
    for ids in token_lists:
        if len(ids) > engine.max_model_len:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {engine.max_model_len} tokens. "
                f"However, an input has {len(ids)} tokens.",
                param="input",
            )
    record.prompt_tokens = sum(len(ids) for ids in token_lists)
    params = PoolingParams(task="embed", dimensions=request.dimensions)
    outputs = await asyncio.gather(
        *(
            engine.encode(ids, params, f"{record.request_id}-{index}", lora_request)
            for index, ids in enumerate(token_lists)
        )
    )
    record.mark_first_token()
    vectors = [output.outputs.data.tolist() for output in outputs]
    return format_embeddings(request, vectors, record.prompt_tokens)
