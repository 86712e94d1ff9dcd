"""The bundled model's checkpoint: float32, holding the GGUF's dequantized values exactly.

In bfloat16 this 135M model's greedy answers hang on ties between the top two tokens, and
CPUs break those ties differently (oneDNN/AMX kernels on AVX-512 machines, torch's fallback on
AVX2 ones): "What is the capital of France?" was answered with nonsense on AMX machines. In
float32 every kernel gives the same answers (bench/dtype_check.py prints the evidence).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelplane.server.default_model import (
    bundled_gguf_path,
    default_model_dir,
    is_prepared,
)

REPO = Path(__file__).resolve().parents[2]
needs_model = pytest.mark.skipif(
    not is_prepared(default_model_dir()), reason="run `make model` to convert the bundled model"
)


@needs_model
def test_bundled_checkpoint_is_stored_in_float32() -> None:
    from safetensors import safe_open

    model_dir = default_model_dir()
    config = json.loads((model_dir / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float32"
    (weights,) = model_dir.glob("*.safetensors")
    with safe_open(str(weights), framework="np") as tensors:
        dtypes = {tensors.get_slice(name).get_dtype() for name in tensors.keys()}  # noqa: SIM118
    assert dtypes == {"F32"}


@needs_model
@pytest.mark.parametrize("layer", [0, 29])
def test_bundled_checkpoint_keeps_the_gguf_values_exactly(layer: int) -> None:
    import gguf
    from safetensors import safe_open

    reader = gguf.GGUFReader(bundled_gguf_path())
    (source,) = [t for t in reader.tensors if t.name == f"blk.{layer}.ffn_down.weight"]
    expected = gguf.quants.dequantize(source.data, source.tensor_type)
    (weights,) = default_model_dir().glob("*.safetensors")
    with safe_open(str(weights), framework="np") as tensors:
        converted = tensors.get_tensor(f"model.layers.{layer}.mlp.down_proj.weight")
    np.testing.assert_array_equal(converted, expected)


def kernel_answers(gemm: str) -> dict[str, str]:
    command = [sys.executable, "-m", "bench.dtype_check", "--model", str(default_model_dir())]
    result = subprocess.run(
        [*command, "--gemm", gemm], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {line["prompt"]: line["answer"] for line in lines}


@needs_model
@pytest.mark.slow
def test_greedy_answers_are_the_same_on_onednn_and_torch_gemm_kernels() -> None:
    """oneDNN (what vLLM picks for float32 on AVX2 and AVX-512 CPUs) and torch's own F.linear."""
    default, torch_kernel = kernel_answers("default"), kernel_answers("torch")
    assert default == torch_kernel
    assert all("Paris" in answer for answer in default.values()), default
