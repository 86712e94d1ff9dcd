"""The chart's Grafana dashboard, read as data: its PromQL queries and the metric names they use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.chart.delivery_checks import CHART

DASHBOARD = CHART / "dashboards" / "modelplane.json"
# A metric name in PromQL: vLLM's `vllm:*` or modelplane's own `modelplane_*`.
METRIC_NAME = re.compile(r"\b(vllm:[a-z_:]+|modelplane_[a-z_]+)")
SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: panel targets and query variables."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def metric_names(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))


def base_name(sample_name: str) -> str:
    """`vllm:generation_tokens_total` -> `vllm:generation_tokens` (a family's name)."""
    for suffix in SAMPLE_SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name
