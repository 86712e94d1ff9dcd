"""`python -m bench`: run the systems, print the table, write latest.json and latest.png."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Sequence

from bench.config import SYSTEMS, parse_config
from bench.report import (
    build_results,
    format_ceiling,
    format_stream_intervals,
    format_table,
    merge_json,
    plot_chart,
)
from bench.runner import log, resolve_model, run_interleaved


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so engines, servers and the operator stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    json_path = config.output_dir / "latest.json"
    if config.command == "ceiling" and config.ceiling_stream_intervals:
        from bench.frontend_ceiling import run_stream_interval_ceiling

        model, served_name = resolve_model(config)
        intervals = run_stream_interval_ceiling(model, served_name, config)
        merge_json(intervals, json_path)
        print(format_stream_intervals(intervals))
        return
    if config.command == "ceiling":
        from bench.frontend_ceiling import run_ceiling

        model, served_name = resolve_model(config)
        ceiling = run_ceiling(model, served_name, config)
        merge_json(ceiling, json_path)
        print(format_ceiling(ceiling))
        return
    if config.command == "cold-start":
        from bench.cold_start import run_cold_start

        model, served_name = resolve_model(config)
        merge_json({"cold_start": run_cold_start(model, served_name)}, json_path)
        log(f"wrote cold_start into {json_path}")
        return
    serving = [s for s in config.systems if s in SYSTEMS]
    operator_results = None
    if "operator" in config.systems:
        from bench.operator_scale import run_operator_scale

        operator_results = run_operator_scale(config.operator_deployments)
        print(operator_results.format())
    if not serving:
        if operator_results is not None:
            operator_results.write(config.output_dir / "operator.json")
        return
    model, served_name = resolve_model(config)
    rounds = asyncio.run(run_interleaved(serving, model, served_name, config))
    # Collect the stopped engines now, not at interpreter exit when their cleanup fails.
    gc.collect()
    results = build_results(config, model, served_name, rounds)
    if operator_results is not None:
        results["operator"] = operator_results.as_dict()
    png_path = config.output_dir / "latest.png"
    # The ceiling and cold-start sections come from their own commands: keep them.
    merge_json(
        results,
        json_path,
        keep=(
            "frontend_ceiling_setup",
            "frontend_ceiling",
            "frontend_floor",
            "frontend_http_floor",
            "frontend_write_floor",
            "frontend_ceiling_stream_interval_setup",
            "frontend_ceiling_stream_interval",
            "cold_start",
        ),
    )
    plot_chart(results, png_path)
    print(format_table(results))
    log(f"wrote {json_path} and {png_path}")
