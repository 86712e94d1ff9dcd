"""Load a model in vLLM (CPU) and print, as one JSON line, the memory figures vLLM itself computed.

Run as a subprocess by test_gpu_fit_vllm.py: `python vllm_memory_probe.py MODEL_DIR`, with
VLLM_CPU_KVCACHE_SPACE set. The engine core runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
so its KV cache config and model are readable.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


def main(model: str) -> None:
    from vllm import LLM

    llm = LLM(model=model, max_model_len=2048, enforce_eager=True)
    engine = llm.llm_engine
    core = engine.engine_core.engine_core
    kv_config = core.scheduler.kv_cache_config
    model_module = core.model_executor.driver_worker.worker.model_runner.model
    spec = kv_config.kv_cache_groups[0].kv_cache_spec
    probe = {
        "dtype": str(engine.vllm_config.model_config.dtype).removeprefix("torch."),
        "weight_bytes": sum(p.numel() * p.element_size() for p in model_module.parameters()),
        "num_blocks": kv_config.num_blocks,
        "block_size": spec.block_size,
        "page_size_bytes_per_layer": spec.page_size_bytes,
        "layers": sum(len(group.layer_names) for group in kv_config.kv_cache_groups),
        "kv_cache_bytes": sum(tensor.size for tensor in kv_config.kv_cache_tensors),
    }
    print("PROBE " + json.dumps(probe), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
