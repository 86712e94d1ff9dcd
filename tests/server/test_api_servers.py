"""`--api-server-count N`: N front-end processes accept on one port over one engine core."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import openai
import psutil
import pytest

from modelplane.server import cli
from tests.server.server_harness import start_server

MODEL = "smollm2-135m-instruct"


def test_api_server_count_is_vllms_flag_and_defaults_to_one() -> None:
    assert cli.build_settings(cli.parse_args(["--model", "/m"], {})).api_server_count == 1
    settings = cli.build_settings(cli.parse_args(["--model", "/m", "--api-server-count", "3"], {}))
    assert settings.api_server_count == 3
    from_env = cli.parse_args(["--model", "/m"], {"MODELPLANE_API_SERVER_COUNT": "2"})
    assert cli.build_settings(from_env).api_server_count == 2


def test_api_server_count_below_one_is_refused() -> None:
    with pytest.raises(SystemExit, match="--api-server-count must be >= 1"):
        cli.build_settings(cli.parse_args(["--model", "/m", "--api-server-count", "0"], {}))


def listening_processes(root: psutil.Process, port: int) -> list[psutil.Process]:
    """The processes of the server's tree that hold a listening socket on `port`."""
    found = []
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for c in process.net_connections(kind="tcp")
            ):
                found.append(process)
    return found


def engine_cores(root: psutil.Process) -> list[psutil.Process]:
    """vLLM titles its engine core process `VLLM::EngineCore`."""
    cores = []
    for process in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in " ".join(process.cmdline()):
                cores.append(process)
    return cores


def serving_processes(front_ends: list[psutil.Process], port: int) -> set[int]:
    """The front ends holding an established client connection on `port` right now."""
    return {
        p.pid
        for p in front_ends
        if any(
            c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            for c in p.net_connections(kind="tcp")
        )
    }


@pytest.mark.slow
def test_two_front_ends_share_the_port_and_stream_from_one_engine(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["--api-server-count", "2"])
    try:
        root = psutil.Process(server.process.pid)
        port = int(server.base_url.rsplit(":", 1)[1])
        front_ends = [p for p in listening_processes(root, port) if p.pid != root.pid]
        assert len(front_ends) == 2, server.log_text()[-3000:]
        assert len(engine_cores(root)) == 1

        # Eight streams at once, each on its own connection, all held open until all began.
        clients = [
            openai.OpenAI(base_url=server.api_url, api_key="none", max_retries=0, timeout=300)
            for _ in range(8)
        ]
        streams = [
            c.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Count to five."}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
            for c in clients
        ]
        assert serving_processes(front_ends, port)  # the front ends, not the parent, serve
        for stream in streams:
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        for c in clients:
            c.close()
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(120)
        server.stop()
    assert code == 0
    assert not [p for p in front_ends if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
