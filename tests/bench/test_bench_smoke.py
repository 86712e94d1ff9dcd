"""`python -m bench` end to end with tiny numbers: one real server, two levels, the JSON shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stats import LEVEL_METRICS

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_bench_smoke_run_writes_latest_json_table_and_chart(tmp_path: Path) -> None:
    result = run_bench(
        [
            "--systems", "modelplane", "--concurrency", "1,2", "--requests-per-level", "2",
            "--max-tokens", "8", "--warmup-requests", "1", "--rounds", "2",
            "--output-dir", str(tmp_path),
        ],
        timeout_s=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]

    results = json.loads((tmp_path / "latest.json").read_text())
    assert list(results["systems"]) == ["modelplane"]
    assert list(results["systems"]["modelplane"]) == ["1", "2"]
    for metrics in results["systems"]["modelplane"].values():
        assert set(LEVEL_METRICS) <= set(metrics)
        assert metrics["rounds"] == 2
        q1, q3 = metrics["output_tokens_per_s_iqr"]
        assert q1 <= metrics["output_tokens_per_s"] <= q3
        assert metrics["errors"] == 0
        assert metrics["output_tokens_per_s"] > 0
        assert 0 < metrics["ttft_p50_ms"] <= metrics["e2e_p50_ms"]
    assert results["ratios"] == {}  # no baseline ran
    assert results["setup"]["max_tokens"] == 8
    assert results["setup"]["rounds"] == 2
    assert (tmp_path / "latest.png").read_bytes()[:4] == b"\x89PNG"
    assert "| modelplane | 2 |" in result.stdout
    assert "round 2/2 modelplane c=2" in result.stderr


def test_bench_operator_scale_reports_children_reconciles_and_rss(tmp_path: Path) -> None:
    result = run_bench(
        ["operator", "--operator-deployments", "5", "--output-dir", str(tmp_path)], timeout_s=300
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads((tmp_path / "operator.json").read_text())
    assert report["deployments"] == 5
    assert report["errors"] == 0
    assert report["seconds_to_all_children"] > 0
    assert report["reconciles"] >= 5
    assert report["operator_peak_rss_mib"] > 10


def test_bench_ceiling_measures_the_front_end_over_the_synthetic_engine(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text('{"cold_start": {"eager": {"ready_s": 1.0}}}')
    result = run_bench(
        [
            "ceiling", "--processes", "1", "--streams", "4", "--ceiling-seconds", "2",
            "--ceiling-tokens", "8", "--rounds", "2", "--output-dir", str(tmp_path),
        ],
        timeout_s=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["cold_start"] == {"eager": {"ready_s": 1.0}}  # other sections are kept
    [point] = results["frontend_ceiling"]
    assert point["processes"] == 1 and point["streams"] == 4 and point["rounds"] == 2
    assert point["cpu_to_floor"] > 0 and len(point["serving_cpu_us_per_token_iqr"]) == 2
    assert point["errors"] == 0
    assert point["output_tokens_per_s"] > 0
    assert 0 < point["serving_cpu_us_per_token"] < 1e6
    assert point["tokens_per_event"] >= 1.0
    [floor] = results["frontend_floor"]
    assert floor["streams"] == 4 and floor["output_tokens_per_s"] > 0
    [http_floor] = results["frontend_http_floor"]
    assert http_floor["streams"] == 4 and http_floor["errors"] == 0
    assert http_floor["output_tokens_per_s"] > 0 and 0 < http_floor["cpu_us_per_token"] < 1e6
    assert http_floor["tokens_per_event"] == 1.0  # paced: every token its own event
    [write_floor] = results["frontend_write_floor"]
    assert write_floor["errors"] == 0 and write_floor["tokens_per_event"] == 1.0
    assert 0 < write_floor["cpu_us_per_token"] < 1e6
    assert "| modelplane x1 | 4 |" in result.stdout
    assert "| uvicorn canned SSE (HTTP floor) | 4 |" in result.stdout
    assert "| socket writes alone (write floor) | 4 |" in result.stdout


def test_bench_ceiling_stream_intervals_write_their_own_section(tmp_path: Path) -> None:
    """`--stream-intervals 1,4`: one front end per vLLM --stream-interval, each chunk then
    carrying up to that many tokens, beside the floor; the process sweep's keys untouched."""
    (tmp_path / "latest.json").write_text('{"frontend_ceiling": [{"processes": 1}]}')
    result = run_bench(
        [
            "ceiling", "--stream-intervals", "1,4", "--rounds", "1", "--streams", "4",
            "--ceiling-seconds", "2", "--ceiling-tokens", "16", "--output-dir", str(tmp_path),
        ],
        timeout_s=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["frontend_ceiling"] == [{"processes": 1}]
    one, four = results["frontend_ceiling_stream_interval"]
    assert (one["stream_interval"], four["stream_interval"]) == (1, 4)
    assert one["errors"] == four["errors"] == 0
    assert one["tokens_per_event"] < 1.5 < 2.5 < four["tokens_per_event"] <= 4
    assert four["output_tokens_per_s"] > 0 and four["cpu_to_floor"] > 0
    setup = results["frontend_ceiling_stream_interval_setup"]
    assert [f["streams"] for f in setup["floor"]] == [4]
    assert "| 4 | 4 |" in result.stdout
