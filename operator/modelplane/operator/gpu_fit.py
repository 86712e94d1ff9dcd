"""Does the model fit its GPUs? Weights + KV cache for maxModelLen + vLLM's overhead, per GPU.

Pure arithmetic on the model's config.json and weight sizes (the facts the fetch Job reports),
mirroring how vLLM sizes memory at startup (vllm/v1/worker/gpu_worker.py
`determine_available_memory`): the KV cache gets `total x gpu_memory_utilization` minus the
weights, the peak activations of one profiling pass, non-torch memory and CUDA graphs; vLLM then
refuses to start when one `max_model_len` sequence does not fit in that KV cache. The verdict is
True/False with the numbers, or Unknown when an input is missing (never a guess shown as fact).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

GiB = 1024**3
MiB = 1024**2

# Total memory per GPU as the driver reports it (nvidia-smi / rocm-smi "total", what vLLM's
# gpu_memory_utilization multiplies), keyed by a pattern of the GPU feature discovery label
# `nvidia.com/gpu.product` (e.g. NVIDIA-H100-80GB-HBM3) or the plain product name. Most specific
# first. Vendor data sheets: A10G/A10 24 GB, L4 24 GB, L40/L40S 48 GB, A100 40/80 GB, H100 80 GB
# (NVL 94 GB), H200 141 GB, B200 180 GB (HGX), T4 16 GB, AMD MI300X 192 GB, MI325X 256 GB.
GPU_MEMORY_MIB: tuple[tuple[str, int], ...] = (
    (r"gb200", 189_471),
    (r"b200", 183_359),
    (r"h200", 143_771),
    (r"h100.*nvl", 95_830),
    (r"h100", 81_559),
    (r"a100.*80", 81_920),
    (r"a100", 40_960),
    (r"l40s?\b", 46_068),
    (r"\bl4\b", 23_034),
    (r"a10g?\b", 23_028),
    (r"\bt4\b", 15_360),
    (r"mi325x", 262_144),
    (r"mi300x", 196_592),
)

DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}
SAFETENSORS_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
DEFAULT_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default
# vLLM downcasts float32 checkpoints to the platform's first supported dtype (bfloat16 on GPUs).
GPU_AUTO_DTYPE_BYTES = 2
# Memory vLLM's profiler finds outside the torch allocator (CUDA context, cuBLAS/NCCL workspaces),
# typically 0.5-1.5 GiB per GPU, and the CUDA graphs it captures by default (its estimate is on by
# default: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1), typically 0.5-1 GiB: a margin, not a profile.
NON_TORCH_BYTES = 1 * GiB
CUDA_GRAPH_BYTES = GiB // 2
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
TP_CANDIDATES = (1, 2, 4, 8, 16)


def product_memory_bytes(product: str) -> int | None:
    """Total memory of one GPU of this product, or None if the table does not know it."""
    name = product.lower().replace("_", "-")
    for pattern, mib in GPU_MEMORY_MIB:
        if re.search(pattern, name):
            return mib * MiB
    return None


QUANTITY_SUFFIX = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity ("80Gi", "94G", 1024) in bytes."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity))
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * QUANTITY_SUFFIX[match.group(2) or ""])


def gib(value: float) -> str:
    return f"{value / GiB:.1f} GiB"


@dataclass(frozen=True)
class ModelShape:
    """The config.json numbers sizing depends on (text model of a multimodal config)."""

    layers: int
    kv_heads: int
    attention_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    context_length: int | None
    dtype_bytes: int | None  # of the checkpoint's floats (config dtype / torch_dtype)
    quantization: str | None  # quant_method of a pre-quantized checkpoint
    mla_latent: int | None  # kv_lora_rank + qk_rope_head_dim (DeepSeek-style MLA)
    experts_per_token: int  # 1 for dense models

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        text = config.get("text_config") or {}
        c = {**config, **text}
        heads = int(c["num_attention_heads"])
        hidden = int(c["hidden_size"])
        head_dim = int(c.get("head_dim") or hidden // heads)
        mla = None
        if c.get("kv_lora_rank"):
            mla = int(c["kv_lora_rank"]) + int(c.get("qk_rope_head_dim") or 0)
        quant = (c.get("quantization_config") or {}).get("quant_method")
        dtype = str(c.get("torch_dtype") or c.get("dtype") or "")
        context = next((int(c[k]) for k in CONTEXT_KEYS if c.get(k)), None)
        moe_size = c.get("moe_intermediate_size")
        experts = int(c.get("num_experts_per_tok") or 1)
        return cls(
            layers=int(c["num_hidden_layers"]),
            kv_heads=int(c.get("num_key_value_heads") or heads),
            attention_heads=heads,
            head_dim=head_dim,
            hidden_size=hidden,
            intermediate_size=int(moe_size or c.get("intermediate_size") or 4 * hidden),
            vocab_size=int(c.get("vocab_size") or 0),
            context_length=context,
            dtype_bytes=DTYPE_BYTES.get(dtype),
            quantization=str(quant) if quant else None,
            mla_latent=mla,
            experts_per_token=experts if moe_size else 1,
        )


@dataclass(frozen=True)
class FitRequest:
    """What the spec asks for (engine flags and GPUs)."""

    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    dtype: str | None = None  # --dtype; None/auto = the checkpoint's (float32 -> bfloat16)
    kv_cache_dtype: str | None = None  # --kv-cache-dtype; None/auto = the model dtype
    quantization: str | None = None  # --quantization
    gpu_memory_utilization: float | None = None
    gpu_memory_bytes: int | None = None  # per GPU
    gpu_label: str = ""  # what the message calls the GPU (product or "resources.gpu.memory")
    max_num_batched_tokens: int | None = None


@dataclass(frozen=True)
class FitEstimate:
    """Bytes per GPU."""

    weights: int
    kv_per_token: int
    tokens: int
    kv: int
    overhead: int
    usable: int

    @property
    def needed(self) -> int:
        return self.weights + self.kv + self.overhead

    @property
    def fits(self) -> bool:
        return self.needed <= self.usable

    def kv_capacity_tokens(self) -> int:
        """Tokens the KV cache left after weights and overhead holds (vLLM's 'KV cache size')."""
        return max(self.usable - self.weights - self.overhead, 0) // self.kv_per_token


@dataclass(frozen=True)
class FitVerdict:
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str
    estimate: FitEstimate | None = None


def weight_bytes(facts: dict[str, Any], shape: ModelShape, request: FitRequest) -> int | None:
    """Bytes of weights as vLLM holds them (all GPUs together), or None if unknown.

    Pre-quantized checkpoints (AWQ/GPTQ packed int4, fp8, ...) are held as stored. Float
    tensors are held in the served dtype: --dtype, else the checkpoint's, with float32 downcast
    to bfloat16 like vLLM's `auto`; --quantization fp8 on a float checkpoint stores 1 byte each.
    """
    by_dtype: dict[str, int] = facts.get("weightBytesByDtype") or {}
    if not by_dtype:
        stored = facts.get("weightFileBytes")
        return int(stored) if stored else None
    if shape.quantization:
        return sum(by_dtype.values())
    served = DTYPE_BYTES.get(str(request.dtype or "auto"))
    if request.quantization == "fp8":
        served = 1
    total = 0
    for dtype, size in by_dtype.items():
        itemsize = SAFETENSORS_FLOAT_BYTES.get(dtype)
        if itemsize is None:
            total += size  # integer/packed tensors: as stored
            continue
        target = served or (GPU_AUTO_DTYPE_BYTES if itemsize == 4 else itemsize)
        total += size // itemsize * target
    return total


def kv_bytes_per_token(shape: ModelShape, request: FitRequest, model_dtype_bytes: int) -> int:
    """KV cache bytes one token takes on one GPU (layers split by PP, KV heads by TP)."""
    element = DTYPE_BYTES.get(str(request.kv_cache_dtype or "auto"), model_dtype_bytes)
    layers = math.ceil(shape.layers / request.pipeline_parallel)
    if shape.mla_latent:  # one compressed latent per token, replicated on every TP rank
        return layers * shape.mla_latent * element
    # vLLM replicates KV heads when there are fewer than TP ranks.
    heads = max(1, shape.kv_heads // request.tensor_parallel)
    return layers * 2 * heads * shape.head_dim * element


def served_dtype_bytes(shape: ModelShape, request: FitRequest) -> int:
    explicit = DTYPE_BYTES.get(str(request.dtype or "auto"))
    if explicit:
        return explicit
    if shape.dtype_bytes in (None, 4):
        return GPU_AUTO_DTYPE_BYTES
    return shape.dtype_bytes


def batched_tokens(request: FitRequest, total: int) -> int:
    """vLLM's default --max-num-batched-tokens for its OpenAI server (engine/arg_utils.py)."""
    if request.max_num_batched_tokens:
        return request.max_num_batched_tokens
    if total >= 160 * GiB:
        return 16384
    if total >= 70 * GiB and "a100" not in request.gpu_label.lower():
        return 8192
    return 2048


def overhead_bytes(shape: ModelShape, request: FitRequest, total: int, dtype_bytes: int) -> int:
    """Peak activations of vLLM's profiling pass plus non-torch memory and CUDA graphs."""
    tokens = batched_tokens(request, total)
    tp = request.tensor_parallel
    mlp = 2 * shape.intermediate_size * shape.experts_per_token // tp  # gate+up of the MLP
    activations = tokens * (shape.hidden_size + mlp) * dtype_bytes * 2
    logits = 1024 * shape.vocab_size // tp * 4  # float32 logits of the sampler's dummy batch
    return NON_TORCH_BYTES + CUDA_GRAPH_BYTES + activations + logits


def estimate(
    facts: dict[str, Any], request: FitRequest, shape: ModelShape | None = None
) -> FitEstimate | None:
    """Bytes per GPU for this request, or None when the facts lack weights or the GPU is unknown."""
    shape = shape or ModelShape.from_config(facts["config"])
    weights = weight_bytes(facts, shape, request)
    tokens = request.max_model_len or shape.context_length
    if weights is None or tokens is None or request.gpu_memory_bytes is None:
        return None
    dtype_bytes = served_dtype_bytes(shape, request)
    gpus = request.tensor_parallel * request.pipeline_parallel
    per_token = kv_bytes_per_token(shape, request, dtype_bytes)
    utilization = request.gpu_memory_utilization or DEFAULT_UTILIZATION
    total = request.gpu_memory_bytes
    return FitEstimate(
        weights=math.ceil(weights / gpus),
        kv_per_token=per_token,
        tokens=tokens,
        kv=per_token * tokens,
        overhead=overhead_bytes(shape, request, total, dtype_bytes),
        usable=int(total * utilization),
    )


def _with(request: FitRequest, **changes: Any) -> FitRequest:
    return FitRequest(**{**request.__dict__, **changes})


def what_would_fit(facts: dict[str, Any], request: FitRequest, shape: ModelShape) -> str:
    """The smallest tensor-parallel size that fits, or the largest maxModelLen at this size."""
    hints = []
    for tp in TP_CANDIDATES:
        if tp <= request.tensor_parallel or shape.attention_heads % tp:
            continue
        candidate = estimate(facts, _with(request, tensor_parallel=tp), shape)
        if candidate is not None and candidate.fits:
            hints.append(f"engine.tensorParallelSize {tp} fits")
            break
    current = estimate(facts, request, shape)
    if current is not None:
        longest = current.kv_capacity_tokens()
        if longest >= 256:  # vLLM needs room for at least a block and a useful prompt
            hints.append(f"engine.maxModelLen {longest // 256 * 256} fits")
    return "; ".join(hints) if hints else "no tensorParallelSize up to 16 fits"


def check_fit(facts: dict[str, Any] | None, request: FitRequest) -> FitVerdict:
    """The GPUFit verdict: True/False with the numbers and a way out, or Unknown with why."""
    if request.gpu_memory_bytes is None:
        return FitVerdict(
            "Unknown",
            "GPUMemoryUnknown",
            f"GPU memory unknown for {request.gpu_label or 'an unset product'}: set "
            "resources.gpu.memory (e.g. 80Gi) or a known resources.gpu.product",
        )
    if not facts or not isinstance(facts.get("config"), dict):
        return FitVerdict("Unknown", "ModelMetadataUnknown", "the model's config.json is not known")
    try:
        shape = ModelShape.from_config(facts["config"])
    except (KeyError, TypeError, ValueError) as error:
        return FitVerdict("Unknown", "ModelMetadataUnknown", f"config.json lacks {error}")
    result = estimate(facts, request, shape)
    if result is None:
        return FitVerdict(
            "Unknown",
            "ModelMetadataUnknown",
            "the weight sizes or the context length (set engine.maxModelLen) are not known",
        )
    utilization = request.gpu_memory_utilization or DEFAULT_UTILIZATION
    numbers = (
        f"weights {gib(result.weights)} + KV for {result.tokens} tokens {gib(result.kv)}"
        f" + overhead {gib(result.overhead)} per GPU vs {gib(result.usable)} usable"
        f" ({request.gpu_label} {gib(request.gpu_memory_bytes)} x {utilization:g})"
    )
    if result.fits:
        return FitVerdict("True", "Fits", numbers, result)
    return FitVerdict(
        "False", "DoesNotFit", f"{numbers}; {what_would_fit(facts, request, shape)}", result
    )
