"""One model split across two processes, as a LeaderWorkerSet's pods run it, on loopback.

The leader runs `modelplane-server` with vLLM's multi-node flags and node rank 0; the worker
runs `modelplane-server --headless` with node rank 1: the commands the operator puts in the
leader and worker pods (`$(LWS_LEADER_ADDRESS)` is 127.0.0.1 here). Pipeline parallel 2: the
bundled model's 9 attention heads cannot be split in two (tensor parallel 2). On CPU each
process binds one core (VLLM_CPU_OMP_THREADS_BIND); pipeline parallel compiles the model
(eager mode cannot run it on CPU, see cpu_defaults.apply_machine_defaults), so the start takes minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from modelplane.server import cli, cpu_defaults
from modelplane.server.headless import check_worker_args
from tests.server.server_harness import RunningServer, free_port, log_tail, wait_until_ready

MODEL = "smollm2-135m-instruct"
# torch.compile of both pipeline stages on a loaded 2-core machine: measured 8-11 minutes.
START_TIMEOUT_S = 1200


def multi_node_flags(rank: str, master_port: int) -> list[str]:
    """What resources/leaderworkerset.multi_node_flags renders, with the leader on loopback."""
    return ["--pipeline-parallel-size", "2", "--max-model-len", "2048", "--nnodes", "2",
            "--node-rank", rank, "--master-addr", "127.0.0.1", "--master-port", str(master_port)]  # fmt: skip


def spawn(command: list[str], log_path: Path, cpu: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": cpu}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@pytest.fixture(scope="module")
def group(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, RunningServer]]:
    workdir = tmp_path_factory.mktemp("multinode")
    port, master_port = free_port(), free_port()
    server = [sys.executable, "-m", "modelplane.server"]
    leader = RunningServer(
        spawn([*server, "--host", "127.0.0.1", "--port", str(port), *multi_node_flags("0", master_port)],
              workdir / "leader.log", "0"),
        f"http://127.0.0.1:{port}", {}, workdir / "leader.log",
    )  # fmt: skip
    worker = RunningServer(
        spawn([*server, "--headless", *multi_node_flags("1", master_port)], workdir / "worker.log", "1"),
        "", {}, workdir / "worker.log",
    )  # fmt: skip
    try:
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited: {log_tail(worker.log_path)}")
        wait_until_ready(leader, timeout=START_TIMEOUT_S)
        yield leader, worker
    finally:
        leader.stop()
        worker.stop()


@pytest.mark.slow
def test_leader_and_headless_worker_answer_the_openai_sdk_together(group) -> None:
    leader, worker = group
    client = openai.OpenAI(base_url=leader.api_url, api_key="none", max_retries=0, timeout=300)
    assert [m.id for m in client.models.list().data] == [MODEL]

    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=16,
    )
    assert chat.usage is not None and chat.usage.completion_tokens > 0
    assert chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length")

    pieces = []
    finish = None
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        temperature=0,
        max_tokens=16,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert len([p for p in pieces if p]) > 1
    assert finish in ("stop", "length")

    # Both halves of the model ran: each process loaded and served its pipeline stage.
    assert worker.process.poll() is None
    worker_log = worker.log_text()
    assert "Headless worker: node 1 of 2" in worker_log
    assert "PP rank 1" in worker_log
    assert "PP rank 0" in leader.log_text()


def test_headless_is_for_worker_ranks_only():
    args = cli.parse_args(["--headless", "--nnodes", "1"], {})
    with pytest.raises(ValueError, match="--nnodes 2 or more"):
        check_worker_args(args)
    args = cli.parse_args(["--headless", "--nnodes", "2", "--node-rank", "0"], {})
    with pytest.raises(ValueError, match="node rank 0 is the leader"):
        check_worker_args(args)
    check_worker_args(cli.parse_args(["--headless", "--nnodes", "2", "--node-rank", "1"], {}))


def test_headless_flags_also_come_from_the_environment():
    args = cli.parse_args([], {"MODELPLANE_HEADLESS": "true", "MODELPLANE_NNODES": "2",
                               "MODELPLANE_NODE_RANK": "1"})  # fmt: skip
    assert (args.headless, args.nnodes, args.node_rank) == (True, 2, 1)


def test_pipeline_parallel_on_cpu_compiles_instead_of_the_eager_default():
    assert cpu_defaults.pipeline_parallel_size(["--pipeline-parallel-size", "2"], {}) == 2
    assert cpu_defaults.pipeline_parallel_size(["--pipeline-parallel-size=4"], {}) == 4
    assert cpu_defaults.pipeline_parallel_size(["-pp", "2"], {}) == 2
    assert cpu_defaults.pipeline_parallel_size([], {"MODELPLANE_PIPELINE_PARALLEL_SIZE": "2"}) == 2
    assert cpu_defaults.pipeline_parallel_size(["--max-model-len", "2048"], {}) == 1
