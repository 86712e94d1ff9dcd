"""The GPU-fit arithmetic against vLLM itself: the bundled model loaded by vLLM on CPU.

The facts come from the fetch command's own reader (config.json + safetensors headers), the
dtype from the model's config (the checkpoint may be stored as bfloat16 or float32), and vLLM's
numbers from its engine after it loaded the model with a 1 GiB KV cache
(VLLM_CPU_KVCACHE_SPACE=1): weight bytes, KV bytes per token and token capacity must match
exactly (tolerance: one KV block of tokens for the capacity; reached: 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelplane.operator.gpu_fit import (
    DTYPE_BYTES,
    FitRequest,
    GiB,
    ModelShape,
    kv_bytes_per_token,
    served_dtype_bytes,
    weight_bytes,
)
from modelplane.server.default_model import default_model_dir, is_prepared
from modelplane.server.fetch import RemoteFile, model_facts

PROBE = Path(__file__).parent / "vllm_memory_probe.py"
KV_CACHE_GIB = 1


@pytest.mark.slow
@pytest.mark.skipif(not is_prepared(default_model_dir()), reason="bundled model not converted")
def test_estimate_matches_what_vllm_allocates_for_the_bundled_model() -> None:
    model_dir = default_model_dir()
    files = [
        RemoteFile(path=p.name, size=p.stat().st_size, blob_id="", sha256=None)
        for p in model_dir.iterdir()
        if p.is_file() and not p.name.startswith(".")
    ]
    facts = model_facts(model_dir, files)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB)}
    done = subprocess.run(
        [sys.executable, str(PROBE), str(model_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    probe_lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and probe_lines, done.stderr[-3000:]
    vllm = json.loads(probe_lines[0].removeprefix("PROBE "))

    shape = ModelShape.from_config(facts["config"])
    request = FitRequest()  # dtype auto, as the server runs it
    dtype_bytes = served_dtype_bytes(shape, request)
    assert dtype_bytes == DTYPE_BYTES[vllm["dtype"]]
    assert weight_bytes(facts, shape, request) == vllm["weight_bytes"]
    per_token = kv_bytes_per_token(shape, request, dtype_bytes)
    assert per_token * vllm["block_size"] == vllm["page_size_bytes_per_layer"] * vllm["layers"]
    # vLLM hands out whole blocks: the estimate's capacity in blocks of the same size.
    block = per_token * vllm["block_size"]
    capacity = KV_CACHE_GIB * GiB // block * vllm["block_size"]
    assert capacity == vllm["num_blocks"] * vllm["block_size"]
    assert vllm["kv_cache_bytes"] == vllm["num_blocks"] * block
