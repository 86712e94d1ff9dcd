"""`python -m bench`: run the systems, print the table, write latest.json and latest.png."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Sequence

from bench.config import SYSTEMS, parse_config
from bench.report import build_results, format_table, plot_chart, write_json
from bench.runner import log, resolve_model, run_interleaved


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so engines, servers and the operator stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
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
    json_path = config.output_dir / "latest.json"
    png_path = config.output_dir / "latest.png"
    write_json(results, json_path)
    plot_chart(results, png_path)
    print(format_table(results))
    log(f"wrote {json_path} and {png_path}")
