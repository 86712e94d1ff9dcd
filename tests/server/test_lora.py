"""LoRA adapters: served under their own model name, listed in /v1/models, applied by vLLM.

The adapter is written by the test (PEFT file layout, small random weights for SmolLM2-135M's
q_proj/v_proj), so no adapter has to be downloaded.
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
