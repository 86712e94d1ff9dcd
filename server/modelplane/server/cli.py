"""`modelplane-server`: vLLM's engine flags with vLLM's names, plus the HTTP server's own.

Every flag can also come from the environment as `MODELPLANE_<FLAG>` (`--max-model-len` ->
`MODELPLANE_MAX_MODEL_LEN`, see env_flags.py), which is how pods are configured; the command
line wins. Without a GPU, cpu_defaults.py fills in the CPU engine's defaults first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelplane.contract import SERVER_PORT
from modelplane.server.body_limit import DEFAULT_MAX_REQUEST_BODY_BYTES, parse_byte_size
from modelplane.server.cpu_defaults import apply_machine_defaults
from modelplane.server.env_flags import env_arguments
from modelplane.server.settings import (
    ApiKey,
    LoRAModule,
    ServerSettings,
    check_unique_keys,
    name_inline_keys,
    parse_api_key_lines,
)

if TYPE_CHECKING:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

logger = logging.getLogger("modelplane.server")


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """The HTTP server's flags (vLLM's engine flags are added next to them)."""
    group = parser.add_argument_group("modelplane server")
    group.add_argument("--host", default="0.0.0.0", help="Address to listen on.")
    group.add_argument("--port", type=int, default=SERVER_PORT, help="Port to listen on.")
    group.add_argument(
        "--api-key",
        action="extend",
        nargs="+",
        default=None,
        help="Accepted API keys, `key` or `name:key` (repeatable). Prefer --api-key-file.",
    )
    group.add_argument(
        "--api-key-file",
        default=None,
        help="File with one API key per line, `key` or `name:key`; the name labels usage.",
    )
    group.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=256,
        help="Generation requests handled at once in the pod (0: no limit); more wait in the "
        "queue. With --api-server-count N each front end takes 1/N (rounded up).",
    )
    group.add_argument(
        "--max-queued-requests",
        type=int,
        default=1024,
        help="Requests allowed to wait for a slot; beyond that the answer is 429. With "
        "--api-server-count N each front end takes 1/N (rounded up).",
    )
    group.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM).")
    group.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM).")
    group.add_argument(
        "--log-requests",
        action="store_true",
        help="Also log each request's parameters (vLLM's request log).",
    )
    group.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json for pods."
    )
    group.add_argument(
        "--lora-modules",
        nargs="+",
        default=None,
        help="LoRA adapters served under their own model names: name=path ... (needs --enable-lora).",
    )
    group.add_argument(
        "--rate-limit-requests-per-minute",
        type=int,
        default=None,
        help="Per API key (or for everyone on an open server): requests per minute, else 429. "
        "Counted per replica and, with --api-server-count, per front-end process.",
    )
    group.add_argument(
        "--rate-limit-tokens-per-minute",
        type=int,
        default=None,
        help="Per API key: prompt + completion tokens per minute, else 429. Counted per "
        "replica and, with --api-server-count, per front-end process.",
    )
    group.add_argument(
        "--max-request-body-size",
        default=str(DEFAULT_MAX_REQUEST_BODY_BYTES),
        help="Largest request body accepted, in bytes or with a unit (4MiB, 512KB; 0: no cap); "
        "larger bodies get 413 before they are parsed.",
    )
    group.add_argument(
        "--headless",
        action="store_true",
        help="Multi-node worker (--nnodes N --node-rank >= 1 --master-addr LEADER): run this "
        "node's share of the engine for the leader, no HTTP server (vLLM's --headless).",
    )
    group.add_argument(
        "--api-server-count",
        type=int,
        default=1,
        help="HTTP front-end processes sharing the port over one engine core (vLLM's flag): "
        "more when the serving process's CPU, not the engine, caps tokens/s. /metrics "
        "reports the whole pod from any of them.",
    )
    group.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="Seconds in-flight requests may take to finish after SIGTERM.",
    )


def build_parser() -> FlexibleArgumentParser:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(
        prog="modelplane-server",
        description="OpenAI-compatible HTTP server in front of an in-process vLLM engine. "
        "Every flag can also be set as MODELPLANE_<FLAG_WITH_UNDERSCORES>.",
    )
    add_server_args(parser)
    parser = AsyncEngineArgs.add_cli_args(parser)
    # No --model means the bundled default model; vLLM's own default would hit the network.
    parser.set_defaults(model=None)
    return parser


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """The command line, with `MODELPLANE_*` variables for the flags it leaves out."""
    parser = build_parser()
    return parser.parse_args([*env_arguments(parser, argv, environ), *argv])


def parse_lora_modules(values: Sequence[str] | None) -> list[LoRAModule]:
    modules: list[LoRAModule] = []
    for item in values or []:
        if item.lstrip().startswith("{"):
            spec = json.loads(item)
            modules.append(LoRAModule(name=spec["name"], path=spec["path"]))
            continue
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--lora-modules {item!r}: expected name=path")
        modules.append(LoRAModule(name=name, path=path))
    return modules


def load_api_keys(inline: Sequence[str] | None, key_file: str | None) -> list[ApiKey]:
    keys = name_inline_keys(list(inline or []))
    if key_file:
        path = Path(key_file)
        keys += parse_api_key_lines(path.read_text(encoding="utf-8"), source=str(path))
    check_unique_keys(keys)
    return keys


def log_level(args: argparse.Namespace) -> str:
    """vLLM's own `--log-level` (absent from the namespace unless given) sets ours too."""
    return str(getattr(args, "log_level", None) or os.environ.get("VLLM_LOGGING_LEVEL", "INFO"))


def build_settings(args: argparse.Namespace) -> ServerSettings:
    """Namespace -> ServerSettings. Fills in the bundled model when no --model was given."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from modelplane.server.default_model import DEFAULT_SERVED_MODEL_NAME, fill_in_bundled_model

    if fill_in_bundled_model(args):
        served = args.served_model_name or [DEFAULT_SERVED_MODEL_NAME]
    else:
        served = args.served_model_name or [args.model]
    if isinstance(served, str):
        served = [served]
    args.served_model_name = list(served)
    if args.log_requests:
        args.enable_log_requests = True
    for flag in ("ssl_certfile", "ssl_keyfile"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            raise SystemExit(f"--{flag.replace('_', '-')}: {getattr(args, flag)} does not exist")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise SystemExit("--ssl-certfile and --ssl-keyfile go together")
    if args.max_concurrent_requests < 0 or args.max_queued_requests < 0:
        raise SystemExit("--max-concurrent-requests and --max-queued-requests must be >= 0")
    if args.api_server_count < 1:
        raise SystemExit("--api-server-count must be >= 1")
    for flag in ("rate_limit_requests_per_minute", "rate_limit_tokens_per_minute"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1")
    try:
        max_request_body_bytes = parse_byte_size(args.max_request_body_size)
    except ValueError as error:
        raise SystemExit(f"--max-request-body-size: {error}") from None
    return ServerSettings(
        engine_args=AsyncEngineArgs.from_cli_args(args),
        served_model_names=list(served),
        host=args.host,
        port=args.port,
        api_keys=load_api_keys(args.api_key, args.api_key_file),
        max_concurrent_requests=args.max_concurrent_requests,
        max_queued_requests=args.max_queued_requests,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_requests=args.log_requests,
        log_format=args.log_format,
        log_level=log_level(args),
        lora_modules=parse_lora_modules(args.lora_modules),
        drain_timeout=args.drain_timeout,
        rate_limit_requests_per_minute=args.rate_limit_requests_per_minute,
        rate_limit_tokens_per_minute=args.rate_limit_tokens_per_minute,
        max_request_body_bytes=max_request_body_bytes,
        api_server_count=args.api_server_count,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from modelplane.server.lifecycle import serve
    from modelplane.server.logging_config import configure_logging, early_log_format

    argv = list(sys.argv[1:] if argv is None else argv)
    # Before vLLM is imported: it configures its loggers on import.
    configure_logging(early_log_format(argv, os.environ))
    argv = apply_machine_defaults(argv)
    args = parse_args(argv, os.environ)
    configure_logging(args.log_format, log_level(args))
    if args.headless:
        from modelplane.server.headless import run_worker

        try:
            run_worker(args)
        except ValueError as error:
            logger.error("Invalid configuration: %s", error)
            raise SystemExit(2) from None
        return
    try:
        settings = build_settings(args)
    except (ValueError, OSError) as error:
        # A bad flag value (unknown model path, unreadable key file...): one line, no traceback.
        logger.error("Invalid configuration: %s", error)
        raise SystemExit(2) from None
    logger.info(
        "Serving %s as %s (%d API key(s)%s)",
        settings.engine_args.model,
        ", ".join(settings.served_model_names),
        len(settings.api_keys),
        "" if settings.api_keys else ": open, no authentication",
    )
    if settings.api_server_count > 1:
        from modelplane.server.api_servers import run_api_servers

        run_api_servers(settings, args)
        return
    serve(settings)
