"""Logging: readable text on a laptop, one JSON object per line in pods (`--log-format json`).

Structured fields travel in `extra={"fields": {...}}`; the JSON formatter merges them into the
line, the text formatter appends them as JSON. vLLM's own loggers (also in the engine core
process) are pointed at the same formatter through `VLLM_LOGGING_CONFIG_PATH`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The usual text line, with structured fields appended as compact JSON."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            text = f"{text} {orjson.dumps(fields, default=str).decode()}"
        return text


def early_log_format(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """--log-format before the full parser exists: vLLM configures its logging when imported."""
    value = environ.get("MODELPLANE_LOG_FORMAT", "text")
    for index, token in enumerate(argv):
        if token.startswith("--log-format="):
            value = token.split("=", 1)[1]
        elif token == "--log-format" and index + 1 < len(argv):
            value = argv[index + 1]
    return "json" if value == "json" else "text"


def configure_logging(log_format: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if log_format == "json":
        point_vllm_logging_at(JsonFormatter, level)


def point_vllm_logging_at(formatter: type[logging.Formatter], level: str) -> None:
    """Make vLLM (here and in its engine process) log through `formatter`, unless configured."""
    if "VLLM_LOGGING_CONFIG_PATH" in os.environ:
        return
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"modelplane": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "modelplane": {
                "class": "logging.StreamHandler",
                "formatter": "modelplane",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "vllm": {"handlers": ["modelplane"], "level": level.upper(), "propagate": False}
        },
    }
    with tempfile.NamedTemporaryFile(
        "w", prefix="modelplane-vllm-logging-", suffix=".json", delete=False
    ) as file:
        json.dump(config, file)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = file.name
    if "vllm.logger" in sys.modules:
        import logging.config

        logging.config.dictConfig(config)
