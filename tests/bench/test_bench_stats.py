"""The benchmark's pure parts: statistics, workload driver, flags, JSON shape, table, chart."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from bench.config import parse_config
from bench.report import build_results, format_table, plot_chart, write_json
from bench.runner import round_order
from bench.stats import (
    LEVEL_METRICS,
    RATIO_METRICS,
    RequestTiming,
    inter_token_gaps,
    percentile,
    quartiles,
    ratio,
    round_ratios,
    summarize_level,
    summarize_rounds,
)
from bench.workload import (
    PROMPTS,
    check_output_length,
    messages_for,
    requests_for_level,
    run_level,
)


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_pct_is_rejected() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_inter_token_gaps_are_differences_of_consecutive_chunks() -> None:
    assert inter_token_gaps([1.0, 1.5, 1.75, 2.75]) == [0.5, 0.25, 1.0]
    assert inter_token_gaps([1.0]) == []
    assert inter_token_gaps([]) == []


def timing(
    start: float, chunks: list[float], tokens: int, error: str | None = None
) -> RequestTiming:
    return RequestTiming(
        started_at=start,
        token_chunk_times=chunks,
        finished_at=None if error else chunks[-1],
        output_tokens=tokens,
        error=error,
    )


def test_summarize_level_counts_only_successful_requests() -> None:
    timings = [
        timing(0.0, [0.1, 0.2, 0.3], 3),
        timing(0.0, [0.3, 0.5, 0.7], 3),
        timing(0.0, [], 0, error="ConnectError: refused"),
    ]
    summary = summarize_level(timings, wall_s=2.0)
    assert list(summary) == list(LEVEL_METRICS)
    assert summary["output_tokens_per_s"] == 3.0  # 6 tokens / 2 s
    assert summary["requests_per_s"] == 1.0
    assert summary["ttft_p50_ms"] == pytest.approx(200.0)
    assert summary["itl_p50_ms"] == pytest.approx(150.0)  # gaps 100, 100, 200, 200 ms
    assert summary["e2e_p50_ms"] == pytest.approx(500.0)
    assert summary["e2e_p95_ms"] == pytest.approx(680.0)  # 300 + 0.95 * 400
    assert summary["errors"] == 1
    assert math.isnan(float(summary["serving_cpu_us_per_token"]))  # not measured


def test_serving_cpu_per_token_counts_only_tokens_of_successful_requests() -> None:
    timings = [timing(0.0, [0.1, 0.2], 2), timing(0.0, [0.1, 0.2], 2), timing(0.0, [], 0, "x")]
    summary = summarize_level(timings, wall_s=1.0, serving_cpu_s=0.002)
    assert summary["serving_cpu_us_per_token"] == pytest.approx(500.0)  # 2 ms over 4 tokens
    no_tokens = summarize_level([timing(0.0, [], 0, "x")], wall_s=1.0, serving_cpu_s=0.5)
    assert math.isnan(float(no_tokens["serving_cpu_us_per_token"]))


def test_summarize_level_with_every_request_failed_has_nan_latencies() -> None:
    summary = summarize_level([timing(0.0, [], 0, error="boom")], wall_s=1.0)
    assert summary["errors"] == 1
    assert summary["output_tokens_per_s"] == 0.0
    assert math.isnan(float(summary["ttft_p50_ms"]))


def test_ratio_is_nan_when_a_side_is_missing_or_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


def test_quartiles_ignore_nan_rounds() -> None:
    assert quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == (2.0, 3.0, 4.0)
    assert quartiles([1.0, math.nan, 3.0]) == (1.5, 2.0, 2.5)
    assert all(math.isnan(q) for q in quartiles([math.nan]))


def level(**overrides: float) -> dict[str, float | int]:
    """One round's summary of one level: every metric 1.0 unless overridden, no errors."""
    return {**dict.fromkeys(LEVEL_METRICS, 1.0), "errors": 0, **overrides}


def test_summarize_rounds_gives_medians_with_their_iqr_and_sums_errors() -> None:
    rounds = [level(output_tokens_per_s=v, errors=e) for v, e in ((10, 0), (30, 1), (20, 0))]
    summary = summarize_rounds(rounds)
    assert summary["output_tokens_per_s"] == 20.0
    assert summary["output_tokens_per_s_iqr"] == [15.0, 25.0]
    assert summary["errors"] == 1
    assert summary["rounds"] == 3
    for metric in RATIO_METRICS:
        assert metric in summary and metric + "_iqr" in summary
    assert "errors_iqr" not in summary


def test_round_ratios_cancel_drift_that_medians_of_figures_keep() -> None:
    # The machine slows down round after round; modelplane is 10% faster in each round.
    baseline = {"16": [level(output_tokens_per_s=v) for v in (100.0, 50.0, 20.0)]}
    subject = {"16": [level(output_tokens_per_s=v * 1.1) for v in (100.0, 50.0, 20.0)]}
    ratios = round_ratios(subject, baseline)
    entry = ratios["16"]
    assert entry["output_tokens_per_s"] == pytest.approx(1.1)
    assert entry["output_tokens_per_s_iqr"] == pytest.approx([1.1, 1.1])
    assert entry["rounds"] == 3
    assert "errors" not in entry
    # The figures' own IQR is wide; the ratio's is zero.
    assert summarize_rounds(baseline["16"])["output_tokens_per_s_iqr"] == [35.0, 75.0]


def test_round_ratios_only_for_levels_both_systems_ran() -> None:
    subject = {"1": [level()], "16": [level()]}
    assert list(round_ratios(subject, {"1": [level(ttft_p50_ms=2.0)]})) == ["1"]
    assert round_ratios(subject, {"1": [level(ttft_p50_ms=2.0)]})["1"]["ttft_p50_ms"] == 0.5


def test_each_system_takes_every_position_over_the_rounds() -> None:
    systems = ["raw", "vllm", "modelplane"]
    orders = [round_order(systems, r) for r in range(3)]
    assert orders[0] == systems
    assert [order[0] for order in orders] == systems
    assert round_order(systems, 3) == systems


def test_short_output_is_an_error_because_ignore_eos_was_not_honoured() -> None:
    assert check_output_length(timing(0.0, [0.1], 8), max_tokens=8).error is None
    short = check_output_length(timing(0.0, [0.1], 5), max_tokens=8)
    assert short.error == "expected 8 output tokens, got 5"


def test_messages_rotate_through_the_fixed_prompts() -> None:
    assert messages_for(0) == [{"role": "user", "content": PROMPTS[0]}]
    assert messages_for(len(PROMPTS)) == messages_for(0)


def test_default_requests_per_round_is_one_wave_of_at_least_4() -> None:
    assert requests_for_level(1, None) == 4
    assert requests_for_level(64, None) == 64
    assert requests_for_level(64, 10) == 10


def test_run_level_keeps_exactly_concurrency_requests_in_flight() -> None:
    in_flight = 0
    peak = 0

    async def send(messages: list[dict[str, str]]) -> RequestTiming:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return timing(0.0, [0.1], 1)

    level = asyncio.run(run_level(send, concurrency=4, total_requests=10))
    assert len(level.timings) == 10
    assert peak == 4
    assert level.wall_s > 0


def test_flags_parse_into_the_config() -> None:
    config = parse_config(
        [
            "--systems", "vllm,modelplane", "--concurrency", "1,2", "--requests-per-level", "3",
            "--max-tokens", "8", "--engine-arg=--enforce-eager", "--engine-arg=--max-model-len 512",
            "--rounds", "3",
        ]
    )  # fmt: skip
    assert config.rounds == 3
    assert config.systems == ["vllm", "modelplane"]
    assert config.concurrency == [1, 2]
    assert config.requests_per_level == 3
    assert config.max_tokens == 8
    assert config.engine_args == [
        "--enforce-eager", "--max-model-len", "512", "--dtype", "float32"
    ]  # fmt: skip
    assert parse_config(["operator"]).systems == ["operator"]
    assert parse_config(["ceiling"]).ceiling_stream_intervals == []
    assert parse_config(["ceiling", "--stream-intervals", "1,4"]).ceiling_stream_intervals == [1, 4]


def test_every_system_serves_the_bundled_model_in_modelplanes_dtype() -> None:
    assert parse_config(["--engine-arg=--dtype bfloat16"]).engine_args == ["--dtype", "bfloat16"]
    own_model = parse_config(["--model", "/m", "--engine-arg=--enforce-eager"])
    assert own_model.engine_args == ["--enforce-eager"]


@pytest.mark.parametrize(
    "argv",
    [["--systems", "tgi"], ["--concurrency", "0"], ["--concurrency", "x"], ["--rounds", "0"]],
)
def test_bad_flags_exit_with_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv)


def fake_results() -> dict:
    config = parse_config(["--concurrency", "1,16", "--engine-arg=--enforce-eager"])

    def rounds(scale: float) -> dict[str, list[dict[str, float | int]]]:
        per_level = {
            "1": summarize_level([timing(0.0, [0.1, 0.2], 2)], 1.0),
            "16": summarize_level([timing(0.0, [0.2, 0.3], 2), timing(0.0, [], 0, "x")], 1.0),
        }
        return {
            lvl: [
                {**v, "output_tokens_per_s": float(v["output_tokens_per_s"]) * scale * drift}
                for drift in (1.0, 0.8, 1.2)
            ]
            for lvl, v in per_level.items()
        }

    return build_results(
        config,
        "/models/smol",
        "smol",
        {"raw": rounds(1.0), "vllm": rounds(1.0), "modelplane": rounds(0.5)},
    )


def test_results_json_has_the_issue_keys_and_modelplane_ratios(tmp_path: Path) -> None:
    results = fake_results()
    path = tmp_path / "latest.json"
    write_json(results, path)
    loaded = json.loads(path.read_text())
    assert set(loaded["systems"]) == {"raw", "vllm", "modelplane"}
    for per_level in loaded["systems"].values():
        assert set(per_level) == {"1", "16"}
        for metrics in per_level.values():
            assert set(LEVEL_METRICS) <= set(metrics)
            assert metrics["rounds"] == 3
            q1, q3 = metrics["output_tokens_per_s_iqr"]
            assert q1 <= metrics["output_tokens_per_s"] <= q3
    assert loaded["systems"]["vllm"]["16"]["errors"] == 3  # one per round, summed
    assert set(loaded["ratios"]) == {"modelplane_vs_vllm", "modelplane_vs_raw"}
    assert loaded["ratios"]["modelplane_vs_vllm"]["1"]["output_tokens_per_s"] == 0.5
    assert loaded["ratios"]["modelplane_vs_vllm"]["1"]["output_tokens_per_s_iqr"] == [0.5, 0.5]
    assert loaded["setup"]["rounds"] == 5
    assert loaded["setup"]["engine_args"] == ["--enforce-eager", "--dtype", "float32"]


def test_nan_is_written_as_null_so_the_file_is_strict_json(tmp_path: Path) -> None:
    results = fake_results()
    results["systems"]["raw"]["1"]["ttft_p50_ms"] = math.nan
    path = tmp_path / "latest.json"
    write_json(results, path)
    assert (
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))["systems"]["raw"][
            "1"
        ]["ttft_p50_ms"]
        is None
    )


def test_ratios_are_left_out_when_a_system_did_not_run() -> None:
    config = parse_config(["--systems", "vllm"])
    results = build_results(config, "m", "m", {"vllm": {}})
    assert results["ratios"] == {}


def test_table_lists_every_system_level_and_the_ratios() -> None:
    table = format_table(fake_results())
    assert "| raw engine | 1 |" in table
    assert "| vLLM server | 16 |" in table
    assert "| modelplane | 16 |" in table
    assert "modelplane / vLLM server" in table
    assert "modelplane / raw engine" in table
    assert "| 1 | 0.50 (0.50-0.50) |" in table  # modelplane / baseline tok/s per round


def test_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "latest.png"
    plot_chart(fake_results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
