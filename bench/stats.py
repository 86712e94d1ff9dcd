"""Pure statistics over timed requests: percentiles, latencies, per-level summaries, and the
summaries over rounds (median with its interquartile range) of figures and of ratios."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The per-level metrics every system reports, in table order (the keys of latest.json).
LEVEL_METRICS: tuple[str, ...] = (
    "output_tokens_per_s",
    "requests_per_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "itl_p50_ms",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "errors",
    # CPU time of the serving process (HTTP, tokenizer, detokenizer; not the engine core, which
    # is a child process) per output token: the HTTP layer's cost, whatever the engine's speed.
    "serving_cpu_us_per_token",
)
# Metrics where a bigger number is better; for the rest (latencies) smaller is better.
HIGHER_IS_BETTER = frozenset({"output_tokens_per_s", "requests_per_s"})
RATIO_METRICS: tuple[str, ...] = tuple(m for m in LEVEL_METRICS if m != "errors")
# system -> level -> one level summary per round.
RoundResults = dict[str, dict[str, list[dict[str, float | int]]]]
# The suffix of a figure's spread beside it in latest.json: `<metric>_iqr: [q1, q3]`.
SPREAD_SUFFIX = "_iqr"


@dataclass
class RequestTiming:
    """What one streamed request saw, in seconds on one monotonic clock."""

    started_at: float
    # Arrival time of every chunk that carried output text or tokens.
    token_chunk_times: list[float] = field(default_factory=list)
    finished_at: float | None = None
    output_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.finished_at is not None

    @property
    def ttft_s(self) -> float | None:
        if not self.token_chunk_times:
            return None
        return self.token_chunk_times[0] - self.started_at

    @property
    def e2e_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


def describe_error(exc: BaseException) -> str:
    """One line naming the error and its cause (vLLM wraps engine errors)."""
    text = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        text += f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})"
    return text


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method); NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def inter_token_gaps(chunk_times: Sequence[float]) -> list[float]:
    """Gaps between consecutive token-carrying chunks of one stream (one token per chunk)."""
    return [later - earlier for earlier, later in itertools.pairwise(chunk_times)]


def summarize_level(
    timings: Iterable[RequestTiming], wall_s: float, serving_cpu_s: float | None = None
) -> dict[str, float | int]:
    """The per-level numbers of one system: throughput over the level's wall time, latencies
    over the successful requests, the count of failed ones, and the serving process's CPU
    seconds (when measured) per output token."""
    timings = list(timings)
    ok = [t for t in timings if t.ok]
    ttfts = [t.ttft_s * 1000 for t in ok if t.ttft_s is not None]
    e2es = [t.e2e_s * 1000 for t in ok if t.e2e_s is not None]
    gaps = [g * 1000 for t in ok for g in inter_token_gaps(t.token_chunk_times)]
    tokens = sum(t.output_tokens for t in ok)
    return {
        "output_tokens_per_s": tokens / wall_s if wall_s > 0 else math.nan,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else math.nan,
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p95_ms": percentile(ttfts, 95),
        "itl_p50_ms": percentile(gaps, 50),
        "e2e_p50_ms": percentile(e2es, 50),
        "e2e_p95_ms": percentile(e2es, 95),
        "errors": len(timings) - len(ok),
        "serving_cpu_us_per_token": (
            serving_cpu_s * 1e6 / tokens if serving_cpu_s is not None and tokens else math.nan
        ),
    }


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is zero."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of the finite values; NaNs when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return percentile(finite, 25), percentile(finite, 50), percentile(finite, 75)


def median_and_iqr(values: Sequence[float]) -> tuple[float, list[float]]:
    q1, median, q3 = quartiles(values)
    return median, [q1, q3]


def summarize_rounds(rounds: Sequence[dict[str, float | int]]) -> dict[str, Any]:
    """One system at one level over its rounds: each metric's median across rounds, its
    interquartile range beside it (`<metric>_iqr`), errors summed, and the round count."""
    summary: dict[str, Any] = {}
    for metric in LEVEL_METRICS:
        values = [float(r[metric]) for r in rounds]
        if metric == "errors":
            summary[metric] = int(sum(values))
            continue
        summary[metric], summary[metric + SPREAD_SUFFIX] = median_and_iqr(values)
    summary["rounds"] = len(rounds)
    return summary


def round_ratios(
    subject: Mapping[str, Sequence[dict[str, float | int]]],
    baseline: Mapping[str, Sequence[dict[str, float | int]]],
) -> dict[str, dict[str, Any]]:
    """subject / baseline per round (the two ran back to back, so slow drift of the machine
    cancels), then the median and IQR of those ratios, for every level both systems ran."""
    ratios: dict[str, dict[str, Any]] = {}
    for level, subject_rounds in subject.items():
        if level not in baseline:
            continue
        pairs = list(zip(subject_rounds, baseline[level], strict=False))
        entry: dict[str, Any] = {}
        for metric in RATIO_METRICS:
            per_round = [ratio(float(s[metric]), float(b[metric])) for s, b in pairs]
            entry[metric], entry[metric + SPREAD_SUFFIX] = median_and_iqr(per_round)
        entry["rounds"] = len(pairs)
        ratios[level] = entry
    return ratios
