"""The benchmark's flags, parsed into one typed settings object."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SYSTEMS: tuple[str, ...] = ("raw", "vllm", "modelplane")
SYSTEM_LABELS = {"raw": "raw engine", "vllm": "vLLM server", "modelplane": "modelplane"}
DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class BenchConfig:
    systems: list[str]
    concurrency: list[int]
    requests_per_level: int | None
    max_tokens: int
    rounds: int
    warmup_requests: int
    model: str | None
    served_model_name: str | None
    engine_args: list[str] = field(default_factory=list)
    output_dir: Path = DEFAULT_RESULTS_DIR
    operator_deployments: int = 200
    command: str = "serve"
    ceiling_processes: list[int] = field(default_factory=lambda: [1, 2])
    ceiling_streams: list[int] = field(default_factory=lambda: [16, 64, 256])
    ceiling_seconds: float = 10.0
    ceiling_tokens: int = 64
    ceiling_stream_intervals: list[int] = field(default_factory=list)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = _int_list(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    return value[0]


def _systems(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in (*SYSTEMS, "operator")]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown system(s) {unknown or text!r}; choose from {', '.join((*SYSTEMS, 'operator'))}"
        )
    return names


def default_engine_args() -> list[str]:
    """`--enforce-eager` where no GPU is visible: it cuts CPU start-up from ~60 s to ~20 s."""
    return [] if shutil.which("nvidia-smi") else ["--enforce-eager"]


def bundled_model_engine_args(engine_args: list[str]) -> list[str]:
    """Every system serves the bundled model in the dtype modelplane-server gives it."""
    if any(arg == "--dtype" or arg.startswith("--dtype=") for arg in engine_args):
        return engine_args
    from modelplane.server.default_model import CHECKPOINT_DTYPE

    return [*engine_args, "--dtype", CHECKPOINT_DTYPE]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark modelplane-server against vLLM's own OpenAI server and the raw "
        "vLLM engine with the same model, engine flags and workload, interleaved over rounds; "
        "or (`operator`) the operator with many ModelDeployments at once.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "operator", "ceiling", "cold-start"],
        default="serve",
        help="`serve` (default) benchmarks the serving systems; `operator` the operator's scale; "
        "`ceiling` the front end over a synthetic engine; `cold-start` time to ready",
    )
    parser.add_argument(
        "--systems",
        type=_systems,
        default=list(SYSTEMS),
        help="comma-separated, run in this order: raw, vllm, modelplane, operator (default: raw,vllm,modelplane)",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 16, 64],
        help="requests in flight per level, comma-separated (default: 1,16,64)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=None,
        help="rounds; each runs every level on every system in turn (default: 5; ceiling: 3)",
    )
    parser.add_argument(
        "--requests-per-level",
        type=_positive_int,
        default=None,
        help="requests per level and round (default: max(4, concurrency): one wave)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=32,
        help="output tokens per request, exact (ignore_eos) (default: 32)",
    )
    parser.add_argument(
        "--warmup-requests",
        type=int,
        default=8,
        help="unmeasured requests sent to each system before its first level (default: 8)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model directory or Hugging Face id (default: the bundled SmolLM2, converted once)",
    )
    parser.add_argument(
        "--served-model-name",
        default=None,
        help="name the servers serve it as (default: smollm2-135m-instruct, or --model)",
    )
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=None,
        metavar="FLAG",
        help="a vLLM engine flag given to every system, repeatable, e.g. "
        "--engine-arg=--max-model-len=2048 (default: --enforce-eager when no GPU is visible)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_RESULTS_DIR,
        help="where latest.json and latest.png go (default: bench/results)",
    )
    parser.add_argument(
        "--processes",
        type=_int_list,
        default=[1, 2],
        help="ceiling: front-end process counts (--api-server-count) to measure (default: 1,2)",
    )
    parser.add_argument(
        "--streams",
        type=_int_list,
        default=[16, 64, 256],
        help="ceiling: concurrent streams per measurement (default: 16,64,256)",
    )
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        default=10.0,
        help="ceiling: measured seconds per point, after 3 s of warm-up (default: 10)",
    )
    parser.add_argument(
        "--ceiling-tokens",
        type=_positive_int,
        default=64,
        help="ceiling: output tokens per request (default: 64)",
    )
    parser.add_argument(
        "--stream-intervals",
        type=_int_list,
        default=[],
        help="ceiling: instead of the process counts, one front end at each of these "
        "--stream-interval values (vLLM's flag), interleaved over --rounds; written as "
        "frontend_ceiling_stream_interval (default: none)",
    )
    parser.add_argument(
        "--operator-deployments",
        type=int,
        default=200,
        help="ModelDeployments created at once by the operator benchmark (default: 200)",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    systems = args.systems
    if args.command == "operator":
        systems = ["operator"]
    engine_args = args.engine_arg if args.engine_arg is not None else default_engine_args()
    # `--engine-arg "--max-model-len 2048"` is one flag with its value: split on whitespace.
    engine_args = [part for arg in engine_args for part in arg.split()]
    if args.model is None:
        engine_args = bundled_model_engine_args(engine_args)
    return BenchConfig(
        systems=systems,
        concurrency=args.concurrency,
        requests_per_level=args.requests_per_level,
        max_tokens=args.max_tokens,
        rounds=args.rounds or (3 if args.command == "ceiling" else 5),
        warmup_requests=args.warmup_requests,
        model=args.model,
        served_model_name=args.served_model_name,
        engine_args=engine_args,
        output_dir=args.output_dir,
        operator_deployments=args.operator_deployments,
        command=args.command,
        ceiling_processes=args.processes,
        ceiling_streams=args.streams,
        ceiling_seconds=args.ceiling_seconds,
        ceiling_tokens=args.ceiling_tokens,
        ceiling_stream_intervals=args.stream_intervals,
    )
