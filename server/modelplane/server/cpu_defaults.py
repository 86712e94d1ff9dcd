"""Defaults for vLLM's CPU backend, applied only on a machine without a GPU and only where the
user chose nothing: a KV cache sized to the RAM, and eager mode (no torch.compile).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelplane.server.env_flags import ENV_PREFIX

logger = logging.getLogger("modelplane.server")

# Flags that decide how the model is compiled: when the user gave one, the CPU default is off.
COMPILATION_FLAGS = ("--enforce-eager", "--no-enforce-eager", "--compilation-config")


def cpu_defaults(environ: Mapping[str, str], total_memory_bytes: int) -> dict[str, str]:
    """Environment vLLM's CPU backend needs and the user left unset: a KV cache sized to the RAM."""
    chosen: dict[str, str] = {}
    if "VLLM_CPU_KVCACHE_SPACE" not in environ:
        gib = total_memory_bytes // 2**30
        chosen["VLLM_CPU_KVCACHE_SPACE"] = str(min(4, max(1, gib // 8)))
    return chosen


def cpu_eager_default(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """`--enforce-eager` unless the user chose a compilation mode (flag, env var or --config).

    On CPU, torch.compile costs minutes at start-up and on the first requests; eager mode
    starts in ~20 s. `--no-enforce-eager` brings compilation back.
    """
    chosen = (
        any(
            token == flag or token.startswith((f"{flag}=", f"{flag}."))
            for token in argv
            for flag in COMPILATION_FLAGS
        )
        or any(token.startswith("-O") for token in argv)
        or any(f"{ENV_PREFIX}{name}" in environ for name in ("ENFORCE_EAGER", "COMPILATION_CONFIG"))
        or config_file_sets_compilation(argv)
    )
    return [] if chosen else ["--enforce-eager"]


def config_file_sets_compilation(argv: Sequence[str]) -> bool:
    """Whether vLLM's `--config FILE` (YAML of flag names) chooses eager or compiled mode."""
    import yaml

    for index, token in enumerate(argv):
        if token.startswith("--config="):
            path = token.split("=", 1)[1]
        elif token == "--config" and index + 1 < len(argv):
            path = argv[index + 1]
        else:
            continue
        try:
            settings = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return False  # vLLM reports the bad file itself
        if not isinstance(settings, dict):
            return False
        keys = {str(key).replace("_", "-") for key in settings}
        if keys & {"enforce-eager", "compilation-config", "O"}:
            return True
    return False


def apply_machine_defaults(argv: Sequence[str]) -> list[str]:
    """On a machine without a GPU, set the CPU engine's defaults (and say which); the argv."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return list(argv)
    import psutil

    chosen = cpu_defaults(os.environ, psutil.virtual_memory().total)
    os.environ.update(chosen)
    for name, value in chosen.items():
        logger.info("No GPU: %s=%s (set it to override)", name, value)
    if pipeline_parallel_size(argv, os.environ) > 1:
        # vLLM's CPU model runner warms up (and so allocates the buffers a later pipeline stage
        # receives its input in) only when it compiles: eager PP fails on the first request.
        logger.info("No GPU, pipeline parallel: compiling the model (eager mode cannot run PP)")
        return list(argv)
    extra = cpu_eager_default(argv, os.environ)
    if extra:
        logger.info("No GPU: --enforce-eager (pass --no-enforce-eager to compile the model)")
    return [*extra, *argv]


def pipeline_parallel_size(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """--pipeline-parallel-size (or -pp, or its MODELPLANE_ variable), before argparse runs."""
    value = environ.get(f"{ENV_PREFIX}PIPELINE_PARALLEL_SIZE", "1")
    for index, token in enumerate(argv):
        if token.startswith("--pipeline-parallel-size="):
            value = token.split("=", 1)[1]
        elif token in ("--pipeline-parallel-size", "-pp") and index + 1 < len(argv):
            value = argv[index + 1]
    try:
        return int(value)
    except ValueError:
        return 1  # argparse reports the bad value itself
