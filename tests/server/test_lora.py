"""LoRA adapters: served under their own model name, listed in /v1/models, applied by vLLM.

The adapter is written by the test (PEFT file layout, small random weights for SmolLM2-135M's
q_proj/v_proj), so no adapter has to be downloaded.

The same server streams with `--stream-interval 4` (vLLM's flag; one engine start for both):
each SSE chunk then carries up to four tokens, and the stream must still add up to the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.server.server_harness import start_server

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"
ADAPTER = "smollm2-test-lora"
RANK = 8
STREAM_INTERVAL = 4


def write_lora_adapter(out: Path, base_model: Path) -> None:
    import torch
    from safetensors.torch import save_file

    config = json.loads((base_model / "config.json").read_text())
    hidden = config["hidden_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv_out = config["num_key_value_heads"] * head_dim
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for module, out_dim in (("q_proj", hidden), ("v_proj", kv_out)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            lora_a = torch.randn(RANK, hidden, generator=generator) * 0.5
            lora_b = torch.randn(out_dim, RANK, generator=generator) * 0.5
            tensors[f"{prefix}.lora_A.weight"] = lora_a.to(torch.bfloat16)
            tensors[f"{prefix}.lora_B.weight"] = lora_b.to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": RANK,
        "lora_alpha": RANK,
        "target_modules": ["q_proj", "v_proj"],
        "lora_dropout": 0.0,
        "bias": "none",
        "base_model_name_or_path": str(base_model),
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config))


@pytest.fixture(scope="module")
def lora_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    from modelplane.server.default_model import ensure_default_model

    workdir = tmp_path_factory.mktemp("lora-server")
    write_lora_adapter(workdir / "adapter", ensure_default_model())
    running = start_server(
        workdir,
        [
            "--enable-lora",
            "--max-lora-rank",
            str(RANK),
            "--lora-modules",
            f"{ADAPTER}={workdir / 'adapter'}",
            "--stream-interval",
            str(STREAM_INTERVAL),
        ],
    )
    try:
        yield openai.OpenAI(base_url=running.api_url, api_key="unused", max_retries=0)
    finally:
        running.stop()


def test_models_list_the_adapter_with_the_base_as_parent(lora_client: openai.OpenAI) -> None:
    models = {model.id: model for model in lora_client.models.list().data}
    assert set(models) == {BASE, ADAPTER}
    assert models[ADAPTER].model_extra is not None
    assert models[ADAPTER].model_extra["parent"] == BASE


def test_model_field_selects_the_adapter(lora_client: openai.OpenAI) -> None:
    def answer(model: str) -> str:
        response = lora_client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=12,
        )
        assert response.model == model
        return response.choices[0].message.content or ""

    base = answer(BASE)
    assert "Paris" in base
    # The adapter's random weights change the greedy answer: the LoRA was applied.
    assert answer(ADAPTER) != base


# --- --stream-interval: several tokens per SSE chunk ----------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_stream_interval_chunks_carry_several_tokens_and_add_up_to_the_answer(
    lora_client: openai.OpenAI,
) -> None:
    ask = {
        "model": BASE,
        "messages": [{"role": "user", "content": "Tell me a story about a dragon."}],
        "temperature": 0,
        "max_tokens": 40,
        "logprobs": True,
        "top_logprobs": 2,
    }
    full = lora_client.chat.completions.create(**ask)  # type: ignore[call-overload]
    chunks = list(
        lora_client.chat.completions.create(
            stream=True,
            stream_options={"include_usage": True},
            **ask,  # type: ignore[arg-type]
        )
    )
    with_choices = [chunk for chunk in chunks if chunk.choices]
    content = [c for c in with_choices if c.choices[0].delta.content]
    text = "".join(c.choices[0].delta.content for c in content)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage is not None and full.usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens == 40
    assert len(content) < full.usage.completion_tokens / 2  # several tokens per chunk
    assert with_choices[-1].choices[0].finish_reason == full.choices[0].finish_reason == "length"
    # logprobs: one entry per token, however many tokens a chunk carries
    per_chunk = [len(c.choices[0].logprobs.content) for c in with_choices if c.choices[0].logprobs]
    assert sum(per_chunk) == full.usage.completion_tokens
    assert max(per_chunk) == STREAM_INTERVAL
    streamed = [
        e for c in with_choices if c.choices[0].logprobs for e in c.choices[0].logprobs.content
    ]
    assert full.choices[0].logprobs is not None and full.choices[0].logprobs.content is not None
    assert [e.token for e in streamed] == [e.token for e in full.choices[0].logprobs.content]
    assert all(len(e.top_logprobs) == 2 for e in streamed)


def test_stream_interval_completions_keep_text_offsets_contiguous(
    lora_client: openai.OpenAI,
) -> None:
    ask = {"model": BASE, "prompt": "The capital of France is", "max_tokens": 24}
    full = lora_client.completions.create(temperature=0, logprobs=1, **ask)  # type: ignore[call-overload]
    chunks = list(lora_client.completions.create(temperature=0, logprobs=1, stream=True, **ask))  # type: ignore[call-overload]
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert "".join(c.choices[0].text for c in with_choices) == full.choices[0].text
    assert len(with_choices) < 24 / 2
    tokens = [
        t for c in with_choices if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens
    ]
    offsets = [
        o for c in with_choices if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset
    ]
    assert full.choices[0].logprobs is not None
    assert tokens == full.choices[0].logprobs.tokens
    assert offsets == full.choices[0].logprobs.text_offset
    assert with_choices[-1].choices[0].finish_reason == full.choices[0].finish_reason


def test_stream_interval_streams_a_named_tool_call_whole(lora_client: openai.OpenAI) -> None:
    ask = {
        "model": BASE,
        "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0,
        "max_tokens": 100,
    }
    full = lora_client.chat.completions.create(**ask)  # type: ignore[call-overload]
    chunks = list(lora_client.chat.completions.create(stream=True, **ask))  # type: ignore[call-overload]
    deltas = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert all(d.index == 0 for d in deltas)
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert full.choices[0].message.tool_calls is not None
    assert arguments == full.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(arguments)["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
