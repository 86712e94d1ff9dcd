"""GPU-fit arithmetic against published configs and hand-checked numbers.

Weight facts are parameter counts worked out by hand from each config (the fetch Job reports the
same thing from the safetensors headers):
- Llama 3.1 8B: 8,030,261,248 params; 70B: 70,553,706,496 params; bf16.
- Qwen3-30B-A3B: 30,532,122,624 params, bf16.
- Llama 3.1 8B AWQ int4 (group 128): 32 layers x 218,103,808 quantized weights -> qweight
  3,489,660,928 B + qzeros 27,262,976 B (I32); scales 109,051,904 B + embeddings/lm_head
  2,101,346,304 B + norms 532,480 B (F16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelplane.operator.gpu_fit import (
    FitRequest,
    GiB,
    MiB,
    ModelShape,
    check_fit,
    estimate,
    kv_bytes_per_token,
    product_memory_bytes,
    quantity_bytes,
    weight_bytes,
)

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
H100 = 81_559 * MiB
L40S = 46_068 * MiB
L4 = 23_034 * MiB


def facts(name: str, by_dtype: dict[str, int]) -> dict[str, Any]:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    return {"config": config, "weightBytesByDtype": by_dtype}


LLAMA_8B = facts("llama-3.1-8b-instruct", {"BF16": 8_030_261_248 * 2})
LLAMA_70B = facts("llama-3.1-70b-instruct", {"BF16": 70_553_706_496 * 2})
QWEN3_MOE = facts("qwen3-30b-a3b", {"BF16": 30_532_122_624 * 2})
LLAMA_8B_AWQ = facts(
    "llama-3.1-8b-instruct-awq-int4",
    {"I32": 3_489_660_928 + 27_262_976, "F16": 109_051_904 + 2_101_346_304 + 532_480},
)


def request(**kwargs: Any) -> FitRequest:
    kwargs.setdefault("gpu_memory_bytes", H100)
    kwargs.setdefault("gpu_label", "NVIDIA-H100-80GB-HBM3")
    return FitRequest(**kwargs)


def test_gpu_table_reads_feature_discovery_labels_and_quantities() -> None:
    assert product_memory_bytes("NVIDIA-H100-80GB-HBM3") == H100
    assert product_memory_bytes("NVIDIA-A100-SXM4-80GB") == 81_920 * MiB
    assert product_memory_bytes("NVIDIA-A100-SXM4-40GB") == 40_960 * MiB
    assert product_memory_bytes("NVIDIA-L40S") == L40S
    assert product_memory_bytes("NVIDIA-L4") == L4
    assert product_memory_bytes("NVIDIA-A10G") == 23_028 * MiB
    assert product_memory_bytes("NVIDIA-H200") == 143_771 * MiB
    assert product_memory_bytes("Tesla-T4") == 15_360 * MiB
    assert product_memory_bytes("AMD-Instinct-MI300X") == 196_592 * MiB
    assert product_memory_bytes("NVIDIA-GeForce-RTX-4090") is None
    assert quantity_bytes("80Gi") == 80 * GiB
    assert quantity_bytes("94G") == 94 * 10**9
    assert quantity_bytes(1024) == 1024


def test_llama_8b_on_one_h100_fits_with_the_numbers() -> None:
    shape = ModelShape.from_config(LLAMA_8B["config"])
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.context_length) == (
        32,
        8,
        128,
        131072,
    )
    # 32 layers x (K+V) x 8 heads x 128 x 2 bytes = 128 KiB per token.
    assert kv_bytes_per_token(shape, request(), 2) == 131_072
    result = estimate(LLAMA_8B, request(max_model_len=32768))
    assert result is not None
    assert result.weights == 16_060_522_496
    assert result.kv == 4 * GiB
    assert result.usable == int(H100 * 0.9)
    # 1.5 GiB margin + 8192 tokens x (4096 + 2 x 14336) x 2 bytes x 2 + 1024 x 128256 x 4.
    assert result.overhead == GiB * 3 // 2 + 8192 * 32768 * 4 + 1024 * 128256 * 4
    verdict = check_fit(LLAMA_8B, request(max_model_len=32768))
    assert verdict.status == "True"
    assert verdict.message.startswith(
        "weights 15.0 GiB + KV for 32768 tokens 4.0 GiB + overhead 3.0 GiB per GPU vs 71.7 GiB usable"
    )


def test_llama_70b_needs_tensor_parallelism_and_says_which() -> None:
    verdict = check_fit(LLAMA_70B, request(tensor_parallel=2))
    assert verdict.status == "False"
    assert verdict.estimate is not None
    # TP=2: 80 layers x 2 x (8/2 heads) x 128 x 2 bytes = 160 KiB per token per GPU.
    assert verdict.estimate.kv_per_token == 163_840
    assert verdict.estimate.weights == 70_553_706_496
    assert verdict.estimate.kv == 131072 * 163_840  # the model's 128k context: 20 GiB
    assert "engine.tensorParallelSize 4 fits" in verdict.message
    # The longest context at TP=2: what is left after weights and overhead, in 256-token steps.
    left = verdict.estimate.usable - verdict.estimate.weights - verdict.estimate.overhead
    assert f"engine.maxModelLen {left // 163_840 // 256 * 256} fits" in verdict.message
    assert check_fit(LLAMA_70B, request(tensor_parallel=2, max_model_len=8192)).status == "True"
    one_gpu = check_fit(LLAMA_70B, request())
    assert one_gpu.status == "False" and "maxModelLen" not in one_gpu.message  # weights alone


def test_qwen3_moe_kv_uses_its_head_dim_and_experts_are_weights() -> None:
    shape = ModelShape.from_config(QWEN3_MOE["config"])
    # 48 layers x 2 x 4 KV heads x head_dim 128 (not 2048/32=64) x 2 bytes = 96 KiB.
    assert kv_bytes_per_token(shape, request(), 2) == 98_304
    single = check_fit(QWEN3_MOE, request(gpu_memory_bytes=L40S, gpu_label="NVIDIA-L40S"))
    assert single.status == "False"  # 56.9 GiB of experts on a 45 GiB card
    assert "engine.tensorParallelSize 2 fits" in single.message
    pair = estimate(
        QWEN3_MOE, request(tensor_parallel=2, gpu_memory_bytes=L40S, gpu_label="NVIDIA-L40S")
    )
    assert pair is not None and pair.fits
    assert pair.kv == 40960 * 49_152  # 2 KV heads per GPU at TP=2


def test_awq_weights_count_packed_int4_and_fp8_kv_halves_the_cache() -> None:
    shape = ModelShape.from_config(LLAMA_8B_AWQ["config"])
    assert shape.quantization == "awq"
    assert weight_bytes(LLAMA_8B_AWQ, shape, request()) == 5_727_854_592  # 5.3 GiB as stored
    on_l4 = request(gpu_memory_bytes=L4, gpu_label="NVIDIA-L4")
    full = check_fit(LLAMA_8B_AWQ, on_l4)
    assert full.status == "False"  # 5.3 GiB + 16 GiB of KV for 128k tokens > 20.2 GiB
    assert "engine.tensorParallelSize 2 fits" in full.message
    fp8 = check_fit(
        LLAMA_8B_AWQ, request(kv_cache_dtype="fp8", gpu_memory_bytes=L4, gpu_label="NVIDIA-L4")
    )
    assert fp8.status == "True"
    assert fp8.estimate is not None and fp8.estimate.kv == 131072 * 65_536


def test_float32_checkpoint_is_served_in_bfloat16_unless_dtype_says_otherwise() -> None:
    fp32 = {**LLAMA_8B, "config": {**LLAMA_8B["config"], "torch_dtype": "float32"}}
    fp32["weightBytesByDtype"] = {"F32": 8_030_261_248 * 4}
    shape = ModelShape.from_config(fp32["config"])
    assert weight_bytes(fp32, shape, request()) == 8_030_261_248 * 2  # vLLM's auto downcast
    assert weight_bytes(fp32, shape, request(dtype="float32")) == 8_030_261_248 * 4
    assert weight_bytes(fp32, shape, request(quantization="fp8")) == 8_030_261_248


def test_mla_caches_one_latent_per_token() -> None:
    config = {
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "hidden_size": 7168,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "max_position_embeddings": 163840,
        "torch_dtype": "bfloat16",
    }
    shape = ModelShape.from_config(config)
    # (512 + 64) x 2 bytes x 61 layers, the same on every TP rank.
    assert kv_bytes_per_token(shape, request(tensor_parallel=8), 2) == 61 * 576 * 2


def test_unknown_inputs_are_unknown_not_a_guess() -> None:
    no_gpu = check_fit(LLAMA_8B, request(gpu_memory_bytes=None, gpu_label="NVIDIA-RTX-9999"))
    assert no_gpu.status == "Unknown" and no_gpu.reason == "GPUMemoryUnknown"
    assert "resources.gpu.memory" in no_gpu.message
    assert check_fit(None, request()).reason == "ModelMetadataUnknown"
    broken = check_fit({"config": {"hidden_size": 1}, "weightFileBytes": 1}, request())
    assert broken.status == "Unknown"


@pytest.mark.parametrize("pp", [1, 2])
def test_pipeline_parallelism_splits_layers_and_weights(pp: int) -> None:
    result = estimate(LLAMA_70B, request(tensor_parallel=4, pipeline_parallel=pp))
    assert result is not None
    assert result.kv_per_token == 80 // pp * 2 * 2 * 128 * 2
    assert result.weights == 70_553_706_496 * 2 // (4 * pp)
