"""One JSON usage line per API request: the basis for cost allocation. Never holds the key."""

from __future__ import annotations

import logging
from typing import Any

from modelplane.server.request_record import RequestRecord

usage_logger = logging.getLogger("modelplane.usage")


def usage_fields(record: RequestRecord) -> dict[str, Any]:
    ttft = record.time_to_first_token_s
    latency = record.latency_s
    return {
        "request_id": record.request_id,
        "key_name": record.key_name,
        "model": record.model,
        "route": record.route,
        "status": record.status_code,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "ttft_ms": None if ttft is None else round(ttft * 1000, 2),
        "latency_ms": None if latency is None else round(latency * 1000, 2),
    }


def log_usage(record: RequestRecord) -> None:
    if usage_logger.isEnabledFor(logging.INFO):
        usage_logger.info("request", extra={"fields": usage_fields(record)})
