"""`python -m bench cold-start`: time to ready and to the first token of a fresh server.

Three starts of `modelplane-server` with the same model: eager (`--enforce-eager`, the CPU
default), compiled on a first start (`--no-enforce-eager` with an empty `VLLM_CACHE_ROOT`),
and compiled again with that cache warm, which is what a restarted or scaled-up pod sees when
the operator puts `VLLM_CACHE_ROOT` on a persistent cache volume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import free_port, stop_process_group

STARTS = {
    "eager": ["--enforce-eager"],
    "compiled_first": ["--no-enforce-eager"],
    "compiled_cached": ["--no-enforce-eager"],
}


def log(message: str) -> None:
    print(f"[cold-start {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def first_token_after(base_url: str, model: str) -> None:
    """Stream one short chat completion until its first content chunk arrives."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 4,
        "stream": True,
    }
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if '"content":"' in line and '"role"' not in line:
                return
    raise RuntimeError("the stream ended without content")


def time_start(
    model: str, served_name: str, flags: list[str], cache_root: Path, timeout_s: float
) -> dict[str, float]:
    """Start the server, return seconds from launch to /ready and to the first token."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "modelplane.server", "--model", model,
        "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port), *flags,
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CACHE_ROOT": str(cache_root)}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.NamedTemporaryFile(prefix="cold-start-", suffix=".log", delete=False) as out:
        log_path = Path(out.name)
        launched = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = launched + timeout_s
        while True:
            if process.poll() is not None or time.perf_counter() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server did not become ready:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/ready", timeout=1.0).status_code == 200:
                    break
            time.sleep(0.1)
        ready_s = time.perf_counter() - launched
        first_token_after(base_url, served_name)
        first_token_s = time.perf_counter() - launched
    finally:
        process.send_signal(signal.SIGTERM)
        stop_process_group(process)
    log_path.unlink(missing_ok=True)
    return {"ready_s": ready_s, "first_token_s": first_token_s}


def run_cold_start(model: str, served_name: str, timeout_s: float = 1800.0) -> dict[str, Any]:
    """`cold_start` of latest.json: {eager, compiled_first, compiled_cached}."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as eager_cache, \
            tempfile.TemporaryDirectory(prefix="vllm-cache-") as compile_cache:  # fmt: skip
        caches = {
            "eager": Path(eager_cache),
            "compiled_first": Path(compile_cache),
            "compiled_cached": Path(compile_cache),
        }
        for name, flags in STARTS.items():
            log(f"{name}: starting ({' '.join(flags)}, VLLM_CACHE_ROOT={caches[name]})")
            results[name] = time_start(model, served_name, flags, caches[name], timeout_s)
            log(f"{name}: ready after {results[name]['ready_s']:.1f} s, first token after "
                f"{results[name]['first_token_s']:.1f} s")  # fmt: skip
    return results
