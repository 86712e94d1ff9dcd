"""The fetch command for real: `python -m modelplane.server.fetch` against a hub on loopback.

The fake hub (fake_hub.py) serves the bundled model's converted files with the endpoints
huggingface_hub calls; HF_ENDPOINT points the real command at it, as it would point at a mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelplane.operator.fetch_progress import FetchProgress, last_progress
from modelplane.server.default_model import default_model_dir, is_prepared
from modelplane.server.fetch import (
    TERMINATION_MESSAGE_LIMIT,
    FetchError,
    Source,
    summary_text,
    trimmed_config,
)
from tests.server.fake_hub import FakeHub, serve_hub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
ADAPTER = "org/sql-lora"
WEIGHTS = "model.safetensors"

pytestmark = pytest.mark.skipif(
    not is_prepared(default_model_dir()), reason="bundled model not converted"
)


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    adapter = tmp_path_factory.mktemp("adapter")
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (adapter / "adapter_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + bytes(16)
    )
    hub = FakeHub(REPO, default_model_dir(), more_repos={ADAPTER: adapter})
    with serve_hub(hub) as running:  # hashes the files once
        yield running


@pytest.fixture
def hub(module_hub: FakeHub) -> FakeHub:
    module_hub.throttle.clear()
    module_hub.corrupt.clear()
    module_hub.requests.clear()
    return module_hub


def fetch_command(hub: FakeHub, home: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    argv = [sys.executable, "-m", "modelplane.server.fetch", f"hf://{REPO}"]
    return [*argv, "--progress-interval", "0.2", *extra], env


def run_fetch(hub: FakeHub, home: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    argv, env = fetch_command(hub, home, *extra)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, lines


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def storage(home: Path) -> Path:
    return home / "hub" / f"models--{REPO.replace('/', '--')}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_fills_the_hub_cache_that_offline_readers_use(hub: FakeHub, tmp_path: Path) -> None:
    code, lines = run_fetch(hub, tmp_path, "--summary-file", str(tmp_path / "termination-log"))
    assert code == 0, lines
    snapshot = storage(tmp_path) / "snapshots" / hub.commit
    for name, served in hub.files.items():
        assert (snapshot / name).stat().st_size == served.size
    assert sha256(snapshot / WEIGHTS) == hub.files[WEIGHTS].sha256
    assert (storage(tmp_path) / "refs" / "main").read_text() == hub.commit
    progress = events(lines, "progress")
    total = sum(f.size for f in hub.files.values())
    assert progress[0]["bytesDone"] == 0 and progress[0]["bytesTotal"] == total  # at once
    assert progress[-1]["bytesDone"] == progress[-1]["bytesTotal"] == total
    # What the operator reads from the pod's log tail for WeightsCached (fetch_progress.py).
    log_tail = "\n".join(json.dumps(line) for line in lines[-20:])
    assert last_progress(log_tail) == FetchProgress(
        f"hf://{REPO}", total, total, progress[-1]["bytesPerSecond"]
    )
    # The summary is the termination message the operator reads: facts for the GPU-fit check.
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary == lines[-1]
    assert summary["commit"] == hub.commit and summary["noop"] is False
    config = json.loads((default_model_dir() / "config.json").read_text())
    assert summary["model"]["config"]["num_hidden_layers"] == config["num_hidden_layers"]
    tensor_bytes = sum(summary["model"]["weightBytesByDtype"].values())
    assert 0 < hub.files[WEIGHTS].size - tensor_bytes < 64 * 1024  # only the JSON header differs
    # A serving pod (HF_HUB_OFFLINE=1) resolves the repo id to this snapshot without a request.
    before = len(hub.requests)
    offline = subprocess.run(
        [
            sys.executable,
            "-c",
            "from huggingface_hub import snapshot_download; from transformers import AutoConfig;"
            f"print(snapshot_download({REPO!r}));"
            f"print(AutoConfig.from_pretrained({REPO!r}).num_hidden_layers)",
        ],
        env={**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.split() == [str(snapshot), str(config["num_hidden_layers"])]
    assert len(hub.requests) == before


def test_second_fetch_is_a_noop(hub: FakeHub, tmp_path: Path) -> None:
    assert run_fetch(hub, tmp_path)[0] == 0
    first_downloads = len([r for r in hub.requests if r["file"]])
    code, lines = run_fetch(hub, tmp_path)
    assert code == 0
    assert events(lines, "complete")[0]["noop"] is True
    assert len([r for r in hub.requests if r["file"]]) == first_downloads  # no file requested


def test_interrupted_fetch_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    hub.throttle[WEIGHTS] = 20 * 1024 * 1024  # bytes/s: slow enough to kill it halfway
    argv, env = fetch_command(hub, tmp_path)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = storage(tmp_path) / "blobs" / f"{hub.files[WEIGHTS].sha256}.incomplete"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not partial.is_file() or partial.stat().st_size < 30 * 1024 * 1024
    ):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # an evicted pod: no cleanup runs
    process.wait(timeout=30)
    kept = partial.stat().st_size
    assert 0 < kept < hub.files[WEIGHTS].size

    hub.throttle.clear()
    served_before = hub.bytes_served(WEIGHTS)
    code, lines = run_fetch(hub, tmp_path)
    assert code == 0, lines
    resumed = [r for r in hub.requests if r["file"] == WEIGHTS and r["range"]]
    assert resumed and resumed[-1]["range"] == f"bytes={kept}-"
    assert hub.bytes_served(WEIGHTS) - served_before == hub.files[WEIGHTS].size - kept
    snapshot = storage(tmp_path) / "snapshots" / hub.commit
    assert sha256(snapshot / WEIGHTS) == hub.files[WEIGHTS].sha256


def test_source_serving_corrupt_bytes_fails_with_the_file_named(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.corrupt.add(WEIGHTS)
    summary_file = tmp_path / "termination-log"
    code, lines = run_fetch(hub, tmp_path, "--summary-file", str(summary_file))
    assert code == 1
    assert [c["file"] for c in events(lines, "corrupt")] == [WEIGHTS]  # fetched a second time
    error = events(lines, "failed")[0]["error"]
    assert WEIGHTS in error and "sha256" in error and hub.files[WEIGHTS].sha256 in error
    assert json.loads(summary_file.read_text())["error"] == error
    assert not (storage(tmp_path) / "modelplane-fetched").exists()  # never marked complete
    assert not (storage(tmp_path) / "blobs" / str(hub.files[WEIGHTS].sha256)).exists()


def test_corrupted_cache_file_is_detected_and_fetched_again(hub: FakeHub, tmp_path: Path) -> None:
    assert run_fetch(hub, tmp_path)[0] == 0
    blob = storage(tmp_path) / "blobs" / str(hub.files[WEIGHTS].sha256)
    with blob.open("r+b") as f:  # bit rot: same size, different bytes
        f.seek(1000)
        f.write(b"\x00" * 8)
    code, lines = run_fetch(hub, tmp_path, "--verify")
    assert code == 0, lines
    assert [c["file"] for c in events(lines, "corrupt")] == [WEIGHTS]
    assert sha256(blob) == hub.files[WEIGHTS].sha256


def test_adapters_are_fetched_after_the_model_and_listed_in_the_summary(
    hub: FakeHub, tmp_path: Path
) -> None:
    argv, env = fetch_command(hub, tmp_path)
    done = subprocess.run([*argv, f"hf://{ADAPTER}"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["source"] == f"hf://{REPO}" and "config" in summary["model"]
    assert summary["adapters"] == [
        {"source": f"hf://{ADAPTER}", "commit": hub.commit, "bytes": (8 + 62 + 16) + 29}
    ]
    adapter_dir = tmp_path / "hub" / "models--org--sql-lora" / "snapshots" / hub.commit
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["r"] == 8


def test_unknown_revision_fails_clearly(hub: FakeHub, tmp_path: Path) -> None:
    code, lines = run_fetch(hub, tmp_path, "--revision", "no-such-branch")
    assert code == 1
    assert "404" in events(lines, "failed")[0]["error"]


def test_source_parsing() -> None:
    assert Source.parse("hf://org/name") == Source("org/name", None)
    assert Source.parse("hf://org/name@v1.0") == Source("org/name", "v1.0")
    assert Source.parse("hf://org/name@v1.0", "abc") == Source("org/name", "abc")
    with pytest.raises(FetchError, match="expected hf://"):
        Source.parse("s3://bucket/model")


def test_summary_fits_the_termination_message_limit() -> None:
    config = {
        "num_hidden_layers": 80,
        "id2label": {str(i): f"LABEL_{i}" for i in range(500)},
        "text_config": {"num_key_value_heads": 8, "layer_types": ["full"] * 200},
    }
    trimmed = trimmed_config(config)
    assert trimmed == {"num_hidden_layers": 80, "text_config": {"num_key_value_heads": 8}}
    huge = {
        "commit": "c",
        "model": {"weightFileBytes": 1, "config": {f"k{i}": i for i in range(900)}},
    }
    text = summary_text(huge)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert json.loads(text)["model"] == {"weightFileBytes": 1}
