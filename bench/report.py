"""The benchmark's outputs: the JSON document, the printed table, the PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from bench.config import SYSTEM_LABELS, SYSTEMS, BenchConfig
from bench.stats import SPREAD_SUFFIX, RoundResults, round_ratios, summarize_rounds

# (subject, baseline) pairs reported as ratios, with their key in latest.json.
RATIO_PAIRS = {
    "modelplane_vs_vllm": ("modelplane", "vllm"),
    "modelplane_vs_raw": ("modelplane", "raw"),
}


def build_results(
    config: BenchConfig, model: str, served_name: str, rounds: RoundResults
) -> dict[str, Any]:
    """latest.json: what ran; per system and level each metric's median over the rounds with
    its IQR beside it; modelplane's ratios, taken per round, as median and IQR."""
    systems = {
        system: {level: summarize_rounds(per_round) for level, per_round in levels.items()}
        for system, levels in rounds.items()
    }
    ratios = {
        key: round_ratios(rounds[subject], rounds[baseline])
        for key, (subject, baseline) in RATIO_PAIRS.items()
        if subject in rounds and baseline in rounds
    }
    return {
        "setup": {
            "model": model,
            "served_model_name": served_name,
            "engine_args": config.engine_args,
            "concurrency": config.concurrency,
            "requests_per_level": config.requests_per_level,
            "rounds": config.rounds,
            "max_tokens": config.max_tokens,
            "warmup_requests": config.warmup_requests,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
        "systems": systems,
        "ratios": ratios,
    }


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: a metric without samples (every request failed) is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite_or_none(results), indent=2) + "\n")


def merge_json(updates: dict[str, Any], path: Path, keep: tuple[str, ...] | None = None) -> None:
    """Write `updates` into latest.json. With `keep`, the file is replaced by `updates` except
    for those sections of the old file; without it, only the updated sections change."""
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    if keep is None:
        merged = {**old, **updates}
    else:
        merged = {**updates, **{k: old[k] for k in keep if k in old and k not in updates}}
    write_json(merged, path)


def format_ceiling(ceiling: dict[str, Any]) -> str:
    """The front-end ceiling as Markdown: the AsyncLLM, HTTP and write floors, then modelplane
    at each process count; medians over the rounds with their IQR, and each one's CPU per
    token over the AsyncLLM floor's, taken round by round."""
    named = [
        ("raw AsyncLLM (floor)", "cpu_us_per_token", p) for p in ceiling.get("frontend_floor", [])
    ]
    named += [
        ("uvicorn canned SSE (HTTP floor)", "cpu_us_per_token", p)
        for p in ceiling.get("frontend_http_floor", [])
    ]
    named += [
        ("socket writes alone (write floor)", "cpu_us_per_token", p)
        for p in ceiling.get("frontend_write_floor", [])
    ]
    named += [
        (f"modelplane x{p['processes']}", "serving_cpu_us_per_token", p)
        for p in ceiling.get("frontend_ceiling", [])
    ]
    rows = [
        [name, str(p["streams"]), _fmt_spread(p, "output_tokens_per_s", 0),
         _fmt_spread(p, cpu_key, 1), _fmt_spread(p, "cpu_to_floor", 2),
         _fmt(p.get("tokens_per_event"), 2)]
        for name, cpu_key, p in named
    ]  # fmt: skip
    return _markdown(
        ["front end", "streams", "output tok/s", "CPU us/token", "CPU x floor", "tokens/event"],
        rows,
    )


def format_stream_intervals(intervals: dict[str, Any]) -> str:
    """One front end per --stream-interval as Markdown, CPU per token against the floor."""
    rows = [
        [str(p["stream_interval"]), str(p["streams"]), _fmt_spread(p, "output_tokens_per_s", 0),
         _fmt_spread(p, "serving_cpu_us_per_token", 1), _fmt_spread(p, "cpu_to_floor", 2),
         _fmt(p["tokens_per_event"], 2)]
        for p in intervals.get("frontend_ceiling_stream_interval", [])
    ]  # fmt: skip
    return _markdown(
        ["stream interval", "streams", "output tok/s", "CPU us/token", "x floor", "tokens/event"],
        rows,
    )


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _fmt_spread(entry: dict[str, Any], key: str, digits: int) -> str:
    """`median (q1-q3)` when the IQR is there, else the bare value."""
    text = _fmt(entry.get(key), digits)
    spread = entry.get(key + SPREAD_SUFFIX)
    if spread is None or text == "-":
        return text
    return f"{text} ({_fmt(spread[0], digits)}-{_fmt(spread[1], digits)})"


TABLE_COLUMNS = (
    ("system", "system"),
    ("conc", "concurrency"),
    ("tok/s", "output_tokens_per_s"),
    ("req/s", "requests_per_s"),
    ("TTFT p50 ms", "ttft_p50_ms"),
    ("TTFT p95 ms", "ttft_p95_ms"),
    ("ITL p50 ms", "itl_p50_ms"),
    ("e2e p50 ms", "e2e_p50_ms"),
    ("e2e p95 ms", "e2e_p95_ms"),
    ("errors", "errors"),
    ("serving CPU us/token", "serving_cpu_us_per_token"),
)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table (it reads fine in a terminal and pastes into docs) plus the ratios."""
    rows = []
    for system in [s for s in SYSTEMS if s in results["systems"]]:
        for level, metrics in results["systems"][system].items():
            rows.append(
                [SYSTEM_LABELS[system], level]
                + [
                    _fmt_spread(
                        metrics,
                        key,
                        2
                        if key == "requests_per_s"
                        else 0
                        if key.endswith("_ms") or key.startswith("serving")
                        else 1,
                    )
                    for _, key in TABLE_COLUMNS[2:]
                ]
            )
    text = "Medians over the rounds (interquartile range):\n\n"
    text += _markdown([title for title, _ in TABLE_COLUMNS], rows)
    for key, per_level in results["ratios"].items():
        subject, baseline = RATIO_PAIRS[key]
        ratio_rows = [
            [level]
            + [
                _fmt_spread(r, key, 2)
                for key in (
                    "output_tokens_per_s",
                    "ttft_p50_ms",
                    "itl_p50_ms",
                    "e2e_p50_ms",
                    "serving_cpu_us_per_token",
                )
            ]
            for level, r in per_level.items()
        ]
        text += (
            f"\n\n{SYSTEM_LABELS[subject]} / {SYSTEM_LABELS[baseline]}, per round, "
            "median (interquartile range):\n\n"
        ) + _markdown(
            ["conc", "tok/s", "TTFT p50", "ITL p50", "e2e p50", "serving CPU/token"],
            ratio_rows,
        )
    return text


def plot_chart(results: dict[str, Any], path: Path) -> None:
    """Grouped bars per concurrency level (medians, IQR as error bars): throughput, TTFT p50,
    ITL p50 and serving CPU per token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in SYSTEMS if s in results["systems"]]
    levels = sorted({lvl for s in systems for lvl in results["systems"][s]}, key=int)
    panels = (
        ("output_tokens_per_s", "output tokens/s (higher is better)"),
        ("ttft_p50_ms", "time to first token p50, ms (lower is better)"),
        ("itl_p50_ms", "inter-token latency p50, ms (lower is better)"),
        ("serving_cpu_us_per_token", "serving process CPU per token, µs (lower is better)"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2))
    width = 0.8 / max(len(systems), 1)
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for i, system in enumerate(systems):
            entries = [results["systems"][system].get(lvl, {}) for lvl in levels]
            values = [e.get(metric) or 0.0 for e in entries]
            # Error bars span the interquartile range over the rounds.
            spreads = [
                e.get(metric + SPREAD_SUFFIX) or [v, v]
                for e, v in zip(entries, values, strict=True)
            ]
            yerr = [
                [max(0.0, v - (s[0] or v)) for v, s in zip(values, spreads, strict=True)],
                [max(0.0, (s[1] or v) - v) for v, s in zip(values, spreads, strict=True)],
            ]
            positions = [x + (i - (len(systems) - 1) / 2) * width for x in range(len(levels))]
            bars = ax.bar(
                positions, values, width, yerr=yerr, capsize=2, label=SYSTEM_LABELS[system]
            )
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(levels)), [f"{lvl} in flight" for lvl in levels])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    setup = results["setup"]
    fig.suptitle(
        f"{setup['served_model_name']}, {setup['max_tokens']} output tokens/request, "
        f"{setup['cpu_count']} CPUs, engine flags: {' '.join(setup['engine_args']) or '(none)'}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
