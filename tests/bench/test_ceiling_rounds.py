"""The ceiling's rounds: every system started once and measured in turn, the order reversed
every other round; medians with their IQR, and ratios to the floor taken round by round."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from bench.frontend_ceiling import CeilingPoint, Measure, interleave, summarize_points
from bench.report import format_ceiling


def point(streams: int, cpu_us: float, rate: float = 1000.0, errors: int = 0) -> CeilingPoint:
    return CeilingPoint(1, streams, rate, cpu_us, 1.0, errors)


def test_every_system_starts_once_and_the_order_reverses_every_other_round() -> None:
    calls: list[tuple[str, int]] = []
    lifecycle: list[str] = []

    @contextlib.contextmanager
    def system(name: str) -> Iterator[Measure]:
        lifecycle.append(f"start {name}")

        def measure(level: int) -> CeilingPoint:
            calls.append((name, level))
            return point(level, float(len(calls)))

        yield measure
        lifecycle.append(f"stop {name}")

    points = interleave({"a": system("a"), "b": system("b")}, [4, 16], rounds=2)
    assert calls == [
        ("a", 4), ("b", 4), ("a", 16), ("b", 16),  # round 1
        ("b", 4), ("a", 4), ("b", 16), ("a", 16),  # round 2, reversed
    ]  # fmt: skip
    assert lifecycle == ["start a", "start b", "stop b", "stop a"]
    assert [p.serving_cpu_us_per_token for p in points["a"][4]] == [1.0, 6.0]
    assert [p.serving_cpu_us_per_token for p in points["b"][16]] == [4.0, 7.0]


def test_a_system_that_fails_to_start_stops_the_ones_started() -> None:
    stopped: list[str] = []

    @contextlib.contextmanager
    def started() -> Iterator[Measure]:
        try:
            yield lambda level: point(level, 1.0)
        finally:
            stopped.append("started")

    @contextlib.contextmanager
    def failing() -> Iterator[Measure]:
        raise RuntimeError("front ends not ready")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError):
        interleave({"ok": started(), "bad": failing()}, [4], rounds=1)
    assert stopped == ["started"]


def test_a_summary_is_medians_with_their_iqr_and_the_ratio_to_the_floor_per_round() -> None:
    system = [point(64, 60.0, 900.0), point(64, 90.0, 700.0, errors=1), point(64, 66.0, 800.0)]
    # A slow round slows both: round by round the ratio stays 1.5, 1.5, 1.65.
    floor = [point(64, 40.0), point(64, 60.0), point(64, 40.0)]
    row = summarize_points(system, "serving_cpu_us_per_token", floor)
    assert row["streams"] == 64 and row["rounds"] == 3 and row["errors"] == 1
    assert row["serving_cpu_us_per_token"] == 66.0
    assert row["serving_cpu_us_per_token_iqr"] == [63.0, 78.0]
    assert row["output_tokens_per_s"] == 800.0
    assert row["cpu_to_floor"] == pytest.approx(1.5)
    assert row["cpu_to_floor_iqr"] == pytest.approx([1.5, 1.575])
    assert "cpu_to_floor" not in summarize_points(floor, "cpu_us_per_token")


def test_the_ceiling_table_has_every_floor_and_front_end_with_spreads_and_ratios() -> None:
    floor = [point(64, 40.0), point(64, 44.0)]
    ceiling = {
        "frontend_floor": [summarize_points(floor, "cpu_us_per_token")],
        "frontend_http_floor": [
            summarize_points([point(64, 15.0), point(64, 17.0)], "cpu_us_per_token", floor)
        ],
        "frontend_write_floor": [
            summarize_points([point(64, 10.0), point(64, 12.0)], "cpu_us_per_token", floor)
        ],
        "frontend_ceiling": [
            {
                "processes": 1,
                **summarize_points(
                    [point(64, 50.0), point(64, 55.0)], "serving_cpu_us_per_token", floor
                ),
            }
        ],
    }
    table = format_ceiling(ceiling)
    assert "| raw AsyncLLM (floor) | 64 | 1000 (1000-1000) | 42.0 (41.0-43.0) | - | 1.00 |" in table
    assert "| uvicorn canned SSE (HTTP floor) | 64 | 1000 (1000-1000) | 16.0 (15.5-16.5) |" in table
    assert "| socket writes alone (write floor) | 64 |" in table
    assert (
        "| modelplane x1 | 64 | 1000 (1000-1000) | 52.5 (51.2-53.8) | 1.25 (1.25-1.25) |" in table
    )
