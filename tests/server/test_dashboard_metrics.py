"""Every query of the chart's Grafana dashboard names a metric the running server exports."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.dashboard_queries import load_dashboard, metric_names, queries


@pytest.mark.slow
def test_every_dashboard_metric_is_in_the_servers_metrics(
    http: httpx.Client, anon_http: httpx.Client
) -> None:
    # One request first, so labelled families have samples.
    http.post(
        "/v1/completions",
        json={"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 2},
    )
    text = anon_http.get("/metrics").text
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    used = set().union(*(metric_names(expr) for expr in queries(load_dashboard())))
    assert used
    assert sorted(used - exported) == []
